"""Distillation: ODE initialisation, Self-Forcing DMD and Self-Forcing++ extended DMD."""
