"""Who may be messaged: suppressions (opt-out, REPUS, hard bounces, ARCO, manual), the SMS
replies that opt out or back in, and the right to be forgotten."""
