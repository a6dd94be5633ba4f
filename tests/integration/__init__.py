"""Tests against real local servers (the embedded Tansu broker); marked ``integration``."""
