"""Diffusion math as pure functions: flow-matching objective, samplers, guidance."""
from vdm.diffusion.flow import (broadcast_levels, euler_sample, flow_matching_loss, guided_velocity,
                                interpolate, sample_levels, velocity_target)
