"""Every text the bot sends, in English and Russian, from one catalogue.

Texts are written in English where they are used, as ``str.format`` templates passed to
:func:`tr`; this module maps each template to its Russian form. A test walks the code and fails on
any template missing here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

LANGS = ("en", "ru")

_NOUNS = {
    # English singular, English plural, Russian forms for 1, 2–4, 5+ (and 11–14)
    "image": ("image", "images", "изображение", "изображения", "изображений"),
    "job": ("job", "jobs", "задание", "задания", "заданий"),
    "character": ("character", "characters", "символ", "символа", "символов"),
}


class Plural(NamedTuple):
    """A count whose noun is chosen in the reader's language when the text is made."""

    n: int
    noun: str


def lang_of(code: str | None) -> str:
    """``ru`` for Russian-speaking users (Telegram's ``language_code``), else ``en``."""
    return "ru" if code and code.lower().split("-")[0] == "ru" else "en"


def tr(lang: str | None, template: str, **params: Any) -> str:
    """``template`` in ``lang`` (``en`` when unknown), with ``params`` filled in."""
    text = RU.get(template, template) if lang == "ru" else template
    if not params:
        return text
    values = {k: plural(lang, *v) if isinstance(v, Plural) else v for k, v in params.items()}
    return text.format(**values)


def plural(lang: str | None, n: int, noun: str) -> str:
    """``4 images`` / ``4 изображения``."""
    one, many, ru_one, ru_few, ru_many = _NOUNS[noun]
    if lang != "ru":
        return f"{n} {one if n == 1 else many}"
    if n % 10 == 1 and n % 100 != 11:
        return f"{n} {ru_one}"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return f"{n} {ru_few}"
    return f"{n} {ru_many}"


RU: dict[str, str] = {}

RU.update(
    {
        # /start, /help, /seq usage
        "Make a series of related images with Seedream 4.0.\n\n"
        "/seq [count] [ratio] [seed=N] [mode=fast|standard] prompt\n\n"
        "• count: {min_count}–{max_count} images (default {default_count})\n"
        "• ratio: {ratios} (default {default_ratio})\n"
        "• seed: a whole number, to repeat a result\n"
        "• mode: {modes} (default {default_mode})\n\n"
        "Examples:\n"
        "/seq 4 16:9 a lighthouse through four seasons\n"
        "/seq 6 9:16 mode=standard a comic strip of a cat learning to fly\n"
        "/seq 2 1:1 seed=42 a red fox in fresh snow, golden hour\n"
        "/seq Generate 3 images of a calm ocean at sunset\n\n"
        "While a job waits in the queue you can tap Cancel under its status message. "
        "/settings sets this chat's defaults.": (
            "Серия связанных изображений с Seedream 4.0.\n\n"
            "/seq [количество] [пропорции] [seed=N] [mode=fast|standard] описание\n\n"
            "• количество: {min_count}–{max_count} изображений (по умолчанию {default_count})\n"
            "• пропорции: {ratios} (по умолчанию {default_ratio})\n"
            "• seed: целое число, чтобы повторить результат\n"
            "• mode: {modes} (по умолчанию {default_mode})\n\n"
            "Примеры:\n"
            "/seq 4 16:9 маяк в четыре времени года\n"
            "/seq 6 9:16 mode=standard комикс о коте, который учится летать\n"
            "/seq 2 1:1 seed=42 рыжая лиса на свежем снегу, закат\n"
            "/seq Сгенерируй 3 изображения спокойного моря на закате\n\n"
            "Пока задание ждёт в очереди, его можно отменить кнопкой «Отменить» под сообщением "
            "о статусе. /settings задаёт настройки этого чата."
        ),
        "Hi! I turn one prompt into a set of consistent images (a story, a product from several "
        "angles, four seasons of one place) with ByteDance Seedream 4.0 on RunComfy.\n\n{usage}": (
            "Привет! Я превращаю одно описание в серию согласованных изображений (история, "
            "товар с разных сторон, одно место в четыре времени года) с помощью ByteDance "
            "Seedream 4.0 на RunComfy.\n\n{usage}"
        ),
        # Parsing /seq
        "Add a prompt after the options, e.g. /seq 4 16:9 a lighthouse in four seasons": (
            "Добавьте описание после параметров, например: /seq 4 16:9 маяк в четыре времени года"
        ),
        "Aspect ratio {ratio} is not available. Use one of: {allowed}.": (
            "Пропорции {ratio} недоступны. Можно: {allowed}."
        ),
        "Give mode= only once.": "Укажите mode= только один раз.",
        "Give seed= only once.": "Укажите seed= только один раз.",
        "Give the aspect ratio only once.": "Укажите пропорции только один раз.",
        "Seed must be a whole number from {low} to {high} (you gave {given}).": (
            "seed должен быть целым числом от {low} до {high} (указано: {given})."
        ),
        "The number of images must be {low}–{high} (you gave {given}).": (
            "Количество изображений: от {low} до {high} (указано: {given})."
        ),
        "Unknown option {key}=. Options are seed=N and mode={modes}.": (
            "Неизвестный параметр {key}=. Есть только seed=N и mode={modes}."
        ),
        "You asked for {count} images but the prompt says {stated}. Use one number, or leave the "
        "count out of the prompt.": (
            "Вы просите {count} изображений, а в описании сказано {stated}. Укажите одно число "
            "или уберите его из описания."
        ),
        "Your prompt is {over} too long (the limit is {limit}).": (
            "Описание длиннее допустимого на {over} (предел — {limit})."
        ),
        "Your prompt is {over} too long (the limit is {limit}, counting the “Generate N images:” "
        "the bot adds).": (
            "Описание длиннее допустимого на {over} (предел — {limit}, вместе с «Generate N "
            "images:», который добавляет бот)."
        ),
        "Your prompt mentions {numbers} images. Say one number, or leave it out and put the count "
        "first: /seq 4 …": (
            "В описании упомянуто {numbers} изображений. Оставьте одно число или уберите его и "
            "укажите количество в начале: /seq 4 …"
        ),
        "mode must be one of: {modes} (you gave {given!r}).": (
            "mode может быть только: {modes} (указано: {given!r})."
        ),
        # Limits
        "Sorry, this bot is not available in this chat.": "Извините, в этом чате бот недоступен.",
        "Sorry, this bot is not available to you.": "Извините, этот бот вам недоступен.",
        "This chat already has {active} in progress (the most is {most}). Please wait for one to "
        "finish.": (
            "В этом чате уже выполняется {active} (максимум — {most}). Дождитесь, пока одно "
            "закончится."
        ),
        "You already have {active} in progress (the most is {most}). Wait for one to finish, or "
        "cancel one.": (
            "У вас уже выполняется {active} (максимум — {most}). Дождитесь окончания или "
            "отмените одно."
        ),
        "You have used all {limit} images of today's limit. It resets at midnight UTC (in {hours} "
        "h {minutes} min).": (
            "Вы израсходовали весь дневной лимит в {limit} изображений. Он обновится в полночь "
            "UTC (через {hours} ч {minutes} мин)."
        ),
        "You have {left} of today's {limit} images left; ask for {left} or fewer. The limit "
        "resets at midnight UTC (in {hours} h {minutes} min).": (
            "Сегодня осталось {left} из {limit} изображений; попросите не больше {left}. Лимит "
            "обновится в полночь UTC (через {hours} ч {minutes} мин)."
        ),
        "{hours} h {minutes} min": "{hours} ч {minutes} мин",
        # RunComfy
        "Could not reach RunComfy, so nothing was submitted or charged. Please try again later.": (
            "Не удалось связаться с RunComfy, поэтому ничего не отправлено и не оплачено. "
            "Попробуйте позже."
        ),
        "RunComfy answered with an unexpected error (HTTP {status}).": (
            "RunComfy ответил неожиданной ошибкой (HTTP {status})."
        ),
        "RunComfy could not make the images.": "RunComfy не смог создать изображения.",
        "RunComfy did not answer in time, so it is unclear whether the job started.": (
            "RunComfy не ответил вовремя, поэтому неясно, запустилось ли задание."
        ),
        "RunComfy does not know this model any more.": "RunComfy больше не знает эту модель.",
        "RunComfy finished but returned no images.": (
            "RunComfy завершил задание, но не вернул ни одного изображения."
        ),
        "RunComfy is having trouble and did not start the job; nothing was charged. Please try "
        "again in a few minutes.": (
            "У RunComfy неполадки, задание не запущено и не оплачено. Попробуйте через несколько "
            "минут."
        ),
        "RunComfy is having trouble right now": "У RunComfy сейчас неполадки",
        "RunComfy no longer knows this job (it may have expired).": (
            "RunComfy больше не знает это задание (возможно, оно устарело)."
        ),
        "RunComfy refused the request.": "RunComfy отклонил запрос.",
        "RunComfy refused the request: {reason}.": "RunComfy отклонил запрос: {reason}.",
        "The bot's RunComfy access is not working. The bot's operator has been told.": (
            "Доступ бота к RunComfy не работает. Владелец бота уже получил сообщение об этом."
        ),
        "The bot's RunComfy account has run out of balance. The bot's operator has been told.": (
            "На счёте RunComfy у бота закончились деньги. Владелец бота уже получил сообщение "
            "об этом."
        ),
        # A job's life
        "It was not sent again, to avoid charging twice. Please send the command again if no "
        "images arrive.": (
            "Повторно оно не отправлялось, чтобы не списать оплату дважды. Если изображения не "
            "придут, отправьте команду ещё раз."
        ),
        "The bot restarted while sending this job, so it is unclear whether it started. It was "
        "not sent again, to avoid charging twice. Please send the command again if no images "
        "arrive.": (
            "Бот перезапустился во время отправки задания, поэтому неясно, запустилось ли оно. "
            "Повторно оно не отправлялось, чтобы не списать оплату дважды. Если изображения не "
            "придут, отправьте команду ещё раз."
        ),
        "No image could be delivered.": "Не удалось доставить ни одного изображения.",
        "Something went wrong on our side.": "У нас что-то пошло не так.",
        "Telegram did not accept the images after several tries.": (
            "Telegram не принял изображения после нескольких попыток."
        ),
        "Telegram refused the images.": "Telegram отказался принять изображения.",
        "The bot cannot post in this chat.": "Бот не может писать в этот чат.",
        "{images} could not be delivered ({reasons}).": "Не доставлено: {images} ({reasons}).",
        "image {n}: {reason}": "изображение {n}: {reason}",
        "the file was not an image": "файл не является изображением",
        "the image could not be downloaded ({reason})": "изображение не скачалось ({reason})",
        "the image had no pixels": "в изображении нет пикселей",
        "the image is too large to send": "изображение слишком большое для отправки",
        "the image link has expired (HTTP {status})": "ссылка на изображение устарела (HTTP {status})",
        "the image was cut short": "изображение пришло не полностью",
        "the image was damaged": "изображение повреждено",
        "the image was empty": "изображение пустое",
        # Status message
        "Job #{id} · {params}": "Задание №{id} · {params}",
        "seed {seed}": "seed {seed}",
        "⏳ Queued (position {position})…": "⏳ В очереди (место {position})…",
        "⏳ Queued…": "⏳ В очереди…",
        "🎨 Generating… {elapsed}": "🎨 Генерация… {elapsed}",
        "📤 Sending {images}…": "📤 Отправляю: {images}…",
        "✅ Done: {images} in {took}.": "✅ Готово: {images} за {took}.",
        "The model returned {got} of the {asked} images asked for.": (
            "Модель вернула {got} из {asked} запрошенных изображений."
        ),
        "🚫 Cancelled.": "🚫 Отменено.",
        "⌛ Timed out: RunComfy did not finish in time.": "⌛ Время вышло: RunComfy не успел.",
        "❌ Failed: {error}": "❌ Не получилось: {error}",
        "something went wrong.": "что-то пошло не так.",
        "Cancel": "Отменить",
        # Cancel
        "Cancelled.": "Отменено.",
        "Cancelling…": "Отменяю…",
        "Too late: the job is already running and can no longer be cancelled.": (
            "Поздно: задание уже выполняется, отменить его нельзя."
        ),
        "This job has already finished.": "Это задание уже завершено.",
        "Only {who} (who asked for this job) or a chat admin can cancel it.": (
            "Отменить задание может только {who} (автор запроса) или администратор чата."
        ),
        "the person who asked for it": "тот, кто его запросил",
        "There is no job {job} in this chat.": "В этом чате нет задания {job}.",
        "You have no job here that can still be cancelled.": (
            "У вас здесь нет заданий, которые ещё можно отменить."
        ),
        "This button no longer works.": "Эта кнопка больше не работает.",
        # Follow-up buttons
        "🔁 Again": "🔁 Ещё раз",
        "📎 Originals": "📎 Оригиналы",
        "ℹ️ Details": "ℹ️ Подробности",
        "Job #{id}: same settings, new seed.": "Задание №{id}: те же настройки, новый seed.",
        "Already started from this message: see the job below.": (
            "Из этого сообщения задание уже запущено: смотрите ниже."
        ),
        "The images of this job were not delivered.": "Изображения этого задания не доставлены.",
        "Sending the original files…": "Отправляю оригинальные файлы…",
        "The original files of job #{id} are no longer kept.": (
            "Оригинальные файлы задания №{id} больше не хранятся."
        ),
        "Job #{id} · {status}": "Задание №{id} · {status}",
        "Prompt: {prompt}": "Описание: {prompt}",
        "Images: {count} · ratio {ratio} · mode {mode} · seed {seed}": (
            "Изображений: {count} · пропорции {ratio} · режим {mode} · seed {seed}"
        ),
        "random (RunComfy does not report it)": "случайный (RunComfy его не сообщает)",
        "Request: {request}": "Запрос: {request}",
        "Cost: {cost}": "Стоимость: {cost}",
        "unknown": "неизвестно",
        "Times: {times}": "Время: {times}",
        "queued {t}": "в очереди {t}",
        "generating {t}": "генерация {t}",
        "delivering {t}": "доставка {t}",
        "Asked by {name}": "Запросил(а): {name}",
        # /settings
        "Defaults for /seq in this chat: {images} · {ratio} · {mode}.\nOptions in a command still "
        "win. Tap to change:": (
            "Настройки /seq в этом чате: {images} · {ratio} · {mode}.\nПараметры в команде "
            "важнее. Нажмите, чтобы изменить:"
        ),
        "Reset": "Сбросить",
        "Only the chat's admins can change its defaults.": (
            "Менять настройки чата могут только его администраторы."
        ),
        "Already set.": "Уже выбрано.",
        "Saved.": "Сохранено.",
        # /jobs and /usage
        "⏳ queued": "⏳ в очереди",
        "🎨 generating": "🎨 генерация",
        "📤 sending": "📤 отправка",
        "✅ done": "✅ готово",
        "❌ failed": "❌ ошибка",
        "🚫 cancelled": "🚫 отменено",
        "⌛ timed out": "⌛ время вышло",
        "just now": "только что",
        "{n} min ago": "{n} мин назад",
        "{n} h ago": "{n} ч назад",
        "{n} days ago": "{n} дн. назад",
        "No jobs in this chat yet. Start one with /seq.": (
            "В этом чате пока нет заданий. Начните с /seq."
        ),
        "Latest jobs in this chat:": "Последние задания в этом чате:",
        "Today (UTC): {images}, {cost}": "Сегодня (UTC): {images}, {cost}",
        "This month: {images}, {cost}": "В этом месяце: {images}, {cost}",
        "As a bot admin you have no daily limit.": "У вас как администратора бота нет дневного лимита.",
        "Daily limit: {limit} images, {left} left; resets in {resets_in}.": (
            "Дневной лимит: {limit} изображений, осталось {left}; обновится через {resets_in}."
        ),
        "All chats this month:": "Все чаты за этот месяц:",
        "No jobs in any chat this month.": "В этом месяце заданий не было ни в одном чате.",
        # The command menu
        "Make a series of images: /seq 4 16:9 prompt": "Серия изображений: /seq 4 16:9 описание",
        "Cancel your latest queued job (or /cancel <job id>)": (
            "Отменить последнее задание в очереди (или /cancel <номер>)"
        ),
        "This chat's latest jobs": "Последние задания этого чата",
        "Your images and cost today and this month": "Ваши изображения и расходы за день и месяц",
        "This chat's defaults: count, ratio, mode": "Настройки чата: количество, пропорции, режим",
        "How to use the bot": "Как пользоваться ботом",
        # Errors
        "Sorry, something went wrong.": "Извините, что-то пошло не так.",
        "Sorry, something went wrong. Please try again.": (
            "Извините, что-то пошло не так. Попробуйте ещё раз."
        ),
    }
)

RU.update(
    {
        # Spend, storage and button rules (hardening)
        "Counted as spent: {images} whose request RunComfy did not answer "
        "(it may have made and billed them; their cost is not known).": (
            "Учтено как потраченное: {images} из запросов, на которые RunComfy не ответил "
            "(он мог их сделать и списать плату; стоимость неизвестна)."
        ),
        "The bot is busy for a moment and nothing was started. Please try again.": (
            "Бот на мгновение занят, ничего не запущено. Попробуйте ещё раз."
        ),
        "Job #{id} was accepted by RunComfy (request {request}), but the bot could not "
        "record it just now. It keeps trying; the images will follow.": (
            "RunComfy принял задание №{id} (запрос {request}), но бот не смог сразу его "
            "записать. Он продолжает попытки; изображения придут."
        ),
        "The original files are being sent or were sent above.": (
            "Оригиналы уже отправляются или отправлены выше."
        ),
        "Job #{id}: {answer}": "Задание №{id}: {answer}",
    }
)

RU.update(
    {
        # Result images that are not trusted (bot.downloads, bot.images)
        "the image link points to a place the bot does not download from": (
            "ссылка на изображение ведёт туда, откуда бот не скачивает"
        ),
        "the image took longer than {seconds} s to download": (
            "изображение скачивалось дольше {seconds} с"
        ),
        "the image claims too many pixels": "в изображении заявлено слишком много пикселей",
    }
)
