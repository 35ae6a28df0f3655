"""Where units run: in-process (debugging), local (the embedded Lambda), aws."""
