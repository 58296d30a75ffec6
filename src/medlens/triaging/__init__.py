"""The worklist: studies ranked by calibrated risk, history and waiting time; never dropped."""
