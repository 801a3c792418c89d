"""The app's screens: the session picker and the four workspace screens."""
