"""The Textual face of OMDP: screens and widgets over the `backend` engine."""
