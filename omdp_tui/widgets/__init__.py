"""Widgets the screens share: charts, the title bar, the node details."""
