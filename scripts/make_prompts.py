"""Generate the system prompts shipped in src/afterbeep/telephony/prompts/<lang>/<name>.wav.

Run by hand after changing a text (`.venv/bin/python scripts/make_prompts.py [NAME ...]`: only
the prompts named, or all); the WAV files are committed. Needs Debian's espeak-ng; output is 8 kHz mono 16-bit PCM, resampled with soxr.
The phone menu's texts are in menu_texts.py, the say- fragments' (numbers, dates) in say_texts.py.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from menu_texts import MENU_TEXTS
from say_texts import SAY_TEXTS

OUT = Path(__file__).resolve().parent.parent / "src" / "afterbeep" / "telephony" / "prompts"

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "vm-greeting": "The person you are calling is not available.",
        "vm-busy": "The person you are calling is on another call.",
        "vm-instructions": "Please leave your message after the tone. When you are done, hang up or press pound.",
        "vm-max-length": "You have reached the maximum length. Goodbye.",
        "vm-saved": "Your message has been saved. Goodbye.",
        "vm-mailbox-full": "The mailbox is full. Goodbye.",
        "vm-try-later": "We cannot take your call right now. Please try again later. Goodbye.",
        "vm-goodbye": "Goodbye.",
        "ivr-invalid": "That is not a valid choice.",
    },
    "es": {
        "vm-greeting": "La persona a la que llama no está disponible.",
        "vm-busy": "La persona a la que llama está en otra llamada.",
        "vm-instructions": "Deje su mensaje después del tono. Cuando termine, cuelgue o pulse la tecla almohadilla.",
        "vm-max-length": "Ha alcanzado la duración máxima. Adiós.",
        "vm-saved": "Su mensaje ha sido guardado. Adiós.",
        "vm-mailbox-full": "El buzón está lleno. Adiós.",
        "vm-try-later": "No podemos atender su llamada ahora. Inténtelo más tarde. Adiós.",
        "vm-goodbye": "Adiós.",
        "ivr-invalid": "Esa opción no es válida.",
    },
    "fr": {
        "vm-greeting": "Votre correspondant n'est pas disponible.",
        "vm-busy": "Votre correspondant est déjà en ligne.",
        "vm-instructions": "Laissez votre message après le bip. Quand vous avez terminé, raccrochez ou appuyez sur dièse.",
        "vm-max-length": "Vous avez atteint la durée maximale. Au revoir.",
        "vm-saved": "Votre message a été enregistré. Au revoir.",
        "vm-mailbox-full": "La messagerie est pleine. Au revoir.",
        "vm-try-later": "Nous ne pouvons pas prendre votre appel pour le moment. Veuillez réessayer plus tard. Au revoir.",
        "vm-goodbye": "Au revoir.",
        "ivr-invalid": "Ce choix n'est pas valide.",
    },
    "de": {
        "vm-greeting": "Der gewünschte Gesprächspartner ist nicht erreichbar.",
        "vm-busy": "Der gewünschte Gesprächspartner telefoniert gerade.",
        "vm-instructions": "Bitte sprechen Sie nach dem Signalton. Wenn Sie fertig sind, legen Sie auf oder drücken Sie die Rautetaste.",
        "vm-max-length": "Die maximale Länge ist erreicht. Auf Wiederhören.",
        "vm-saved": "Ihre Nachricht wurde gespeichert. Auf Wiederhören.",
        "vm-mailbox-full": "Die Mailbox ist voll. Auf Wiederhören.",
        "vm-try-later": "Wir können Ihren Anruf gerade nicht annehmen. Bitte versuchen Sie es später erneut. Auf Wiederhören.",
        "vm-goodbye": "Auf Wiederhören.",
        "ivr-invalid": "Diese Auswahl ist ungültig.",
    },
}


# Callbacks (issue 18): what the agent hears before and instead of the customer.
CALLBACK_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "cb-connecting": "Connecting your callback.",
        "cb-busy": "The customer's line is busy.",
        "cb-no-answer": "The customer did not answer.",
        "cb-failed": "The call to the customer could not be completed.",
    },
    "es": {
        "cb-connecting": "Conectando su devolución de llamada.",
        "cb-busy": "La línea del cliente está ocupada.",
        "cb-no-answer": "El cliente no contestó.",
        "cb-failed": "No se pudo completar la llamada al cliente.",
    },
    "fr": {
        "cb-connecting": "Connexion de votre rappel.",
        "cb-busy": "La ligne du client est occupée.",
        "cb-no-answer": "Le client n'a pas répondu.",
        "cb-failed": "L'appel au client n'a pas pu aboutir.",
    },
    "de": {
        "cb-connecting": "Ihr Rückruf wird verbunden.",
        "cb-busy": "Die Leitung des Kunden ist besetzt.",
        "cb-no-answer": "Der Kunde hat nicht geantwortet.",
        "cb-failed": "Der Anruf beim Kunden konnte nicht hergestellt werden.",
    },
}
for _language, _texts in CALLBACK_TEXTS.items():
    TEXTS[_language].update(_texts)


# Queues: the caller's position (1 to 9, then "many"), and the key that leaves a message.
QUEUE_TEXTS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "en": (
        "You are caller number {}.",
        ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
        "Many callers are waiting before you. Please stay on the line.",
        "To leave a message, press star.",
    ),
    "es": (
        "Usted es la persona número {} en la fila.",
        ("uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"),
        "Hay muchas personas esperando antes que usted. Por favor, no cuelgue.",
        "Para dejar un mensaje, pulse asterisco.",
    ),
    "fr": (
        "Vous êtes l'appelant numéro {}.",
        ("un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
        "De nombreux appelants attendent avant vous. Veuillez rester en ligne.",
        "Pour laisser un message, appuyez sur étoile.",
    ),
    "de": (
        "Sie sind Anrufer Nummer {}.",
        ("eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
        "Viele Anrufer warten vor Ihnen. Bitte bleiben Sie in der Leitung.",
        "Um eine Nachricht zu hinterlassen, drücken Sie die Sterntaste.",
    ),
}
for _language, (_sentence, _words, _many, _star) in QUEUE_TEXTS.items():
    for _position, _word in enumerate(_words, start=1):
        TEXTS[_language][f"queue-position-{_position}"] = _sentence.format(_word)
    TEXTS[_language]["queue-position-many"] = _many
    TEXTS[_language]["queue-press-star"] = _star

# The system greeting after the owner's recorded name ("<name> is not available").
NAME_TEXTS: dict[str, tuple[str, str]] = {
    "en": ("is not available.", "is on another call."),
    "es": ("no está disponible.", "está en otra llamada."),
    "fr": ("n'est pas disponible.", "est déjà en ligne."),
    "de": ("ist nicht erreichbar.", "telefoniert gerade."),
}
for _language, (_unavailable, _busy) in NAME_TEXTS.items():
    TEXTS[_language]["vm-unavailable-after-name"] = _unavailable
    TEXTS[_language]["vm-busy-after-name"] = _busy

# With no recorded name, the owner's extension read out between these and the texts above.
EXTENSION_TEXTS: dict[str, str] = {
    "en": "The person at extension",
    "es": "La persona en la extensión",
    "fr": "Le correspondant au poste",
    "de": "Der Teilnehmer mit der Durchwahl",
}
for _language, _text in EXTENSION_TEXTS.items():
    TEXTS[_language]["vm-person-at-extension"] = _text

# The phone menu's prompts and the fragments numbers and dates are said with (domain/say.py).
for _language in TEXTS:
    TEXTS[_language] |= MENU_TEXTS[_language] | SAY_TEXTS[_language]

# Fragments played one after another: their leading and trailing silence is cut to this much.
FRAGMENT_PREFIXES = ("say-", "vmm-", "vm-person-at-extension")
FRAGMENT_PAD_S = 0.04
SILENCE_LEVEL = 0.02


def trim(audio: np.ndarray, rate: int) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > SILENCE_LEVEL * float(np.max(np.abs(audio)) or 1.0))
    if loud.size == 0:
        return audio
    pad = int(FRAGMENT_PAD_S * rate)
    return audio[max(0, loud[0] - pad) : loud[-1] + 1 + pad]


def render(text: str, language: str, target: Path, *, trimmed: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", language, "-s", "150", "-w", str(raw), text], check=True)
        audio, rate = sf.read(raw, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if trimmed:
        audio = trim(audio, rate)
    audio = soxr.resample(audio, rate, 8000, quality="HQ")
    peak = float(np.max(np.abs(audio))) or 1.0
    pcm = np.clip(audio / peak * 0.7 * 32767, -32768, 32767).astype(np.int16)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, pcm, 8000, subtype="PCM_16")


def main(argv: list[str] | None = None) -> int:
    names = set(sys.argv[1:] if argv is None else argv)
    unknown = names - {name for texts in TEXTS.values() for name in texts}
    if unknown:
        print(f"no prompt named {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for language, texts in TEXTS.items():
        for name, text in texts.items():
            if not names or name in names:
                trimmed = name.startswith(FRAGMENT_PREFIXES)
                render(text, language, OUT / language / f"{name}.wav", trimmed=trimmed)
    print(f"wrote prompts under {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
