"""The names of the phone menu's prompts (`vmm-...`), recorded in every language by scripts/make_prompts.py.

Counts, dates and phone numbers are not here: they are `say-...` fragments (`domain.say`), played
after a prompt such as `YOU_HAVE`, `RECEIVED` or `FROM`.
"""

from __future__ import annotations

# Logging in.
ENTER_MAILBOX = "vmm-enter-mailbox"
ENTER_PIN = "vmm-enter-pin"
WRONG_PIN = "vmm-wrong-pin"
LOGIN_INCORRECT = "vmm-login-incorrect"
TOO_MANY_ATTEMPTS = "vmm-too-many-attempts"
LOCKED = "vmm-locked"

# Counts: YOU_HAVE, say_count(new, "new-message"), say-and, say_count(saved, "saved-message").
YOU_HAVE = "vmm-you-have"
NO_MESSAGES = "vmm-no-messages"

# Main menu: 1 listen, 0 mailbox options, * help, # exit.
MAIN_MENU = "vmm-main-menu"
HELP = "vmm-help"

# Listening.
NEW_MESSAGES = "vmm-new-messages"
SAVED_MESSAGES = "vmm-saved-messages"
FIRST_MESSAGE = "vmm-first-message"
LAST_MESSAGE = "vmm-last-message"
MESSAGE = "vmm-message"  # followed by say_number(position)
NO_MORE_MESSAGES = "vmm-no-more-messages"
NO_PREVIOUS_MESSAGE = "vmm-no-previous-message"
MESSAGE_MENU = "vmm-message-menu"
MESSAGE_DELETED = "vmm-message-deleted"
MESSAGE_UNDELETED = "vmm-message-undeleted"
PRESS_7_UNDELETE = "vmm-press-7-undelete"

# 9: save to a folder (the folders of `domain.messages.Folder`).
CHOOSE_FOLDER = "vmm-choose-folder"
FOLDER_NEW = "vmm-folder-new"
FOLDER_SAVED = "vmm-folder-saved"
FOLDER_URGENT = "vmm-folder-urgent"
MOVED_TO_NEW = "vmm-moved-to-new"
MOVED_TO_SAVED = "vmm-moved-to-saved"
MOVED_TO_URGENT = "vmm-moved-to-urgent"

# 3: the envelope (RECEIVED, say_datetime; FROM, say_digits or UNKNOWN_CALLER), 5 calls back.
RECEIVED = "vmm-received"
FROM = "vmm-from"
UNKNOWN_CALLER = "vmm-unknown-caller"
PRESS_5_CALL_BACK = "vmm-press-5-call-back"
CALLING_BACK = "vmm-calling-back"
CALL_BACK_UNAVAILABLE = "vmm-call-back-unavailable"

# 8: forward to another mailbox of the account.
FORWARD_ENTER_MAILBOX = "vmm-forward-enter-mailbox"
NO_SUCH_MAILBOX = "vmm-no-such-mailbox"
MESSAGE_FORWARDED = "vmm-message-forwarded"

# 0: mailbox options.
OPTIONS_MENU = "vmm-options-menu"
TEMP_GREETING_ON = "vmm-temp-greeting-on"
TEMP_GREETING_REMOVED = "vmm-temp-greeting-removed"

# Recording a greeting or the name: 1 accept, 2 re-record, 3 listen.
RECORD_UNAVAILABLE = "vmm-record-unavailable"
RECORD_BUSY = "vmm-record-busy"
RECORD_NAME = "vmm-record-name"
RECORD_TEMPORARY = "vmm-record-temporary"
RECORD_AFTER_TONE = "vmm-record-after-tone"
REVIEW_RECORDING = "vmm-review-recording"
RECORDING_TOO_SHORT = "vmm-recording-too-short"
GREETING_SAVED = "vmm-greeting-saved"
NAME_SAVED = "vmm-name-saved"

# 5: change the PIN.
ENTER_NEW_PIN = "vmm-enter-new-pin"
REENTER_NEW_PIN = "vmm-reenter-new-pin"
PINS_DO_NOT_MATCH = "vmm-pins-do-not-match"
PIN_TOO_SIMPLE = "vmm-pin-too-simple"
PIN_CHANGED = "vmm-pin-changed"

INVALID = "vmm-invalid"
GOODBYE = "vmm-goodbye"

# Every name above, in the order written.
MENU_PROMPTS: tuple[str, ...] = tuple(
    value
    for value in dict(globals()).values()
    if isinstance(value, str) and value.startswith("vmm-")
)
