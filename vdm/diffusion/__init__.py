"""Diffusion math as pure functions: flow-matching objective, samplers, guidance."""
from vdm.diffusion.flow import (broadcast_levels, euler_sample, flow_matching_loss, guided_velocity,
                                interpolate, sample_levels, temporal_consistency_loss,
                                velocity_target, warp_previous)
