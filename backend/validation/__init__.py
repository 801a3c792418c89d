"""Chained validation: a ranked partition run across the chain as it would be deployed,
its measured stage and link times set beside the ranking's predictions.

`route` (what each device does in the run), `runner` (the stages on the devices, through
backend/remote/stages.py), `report` (clocks put together, statistics, where a prediction
is off). The device side is backend/device/stage.py and tensorwire.py. See
docs/validation.md.
"""
