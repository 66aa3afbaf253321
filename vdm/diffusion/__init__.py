"""Diffusion math as pure functions: flow-matching objective, samplers, guidance."""
from vdm.diffusion.flow import (broadcast_levels, flow_matching_loss, interpolate,
                                temporal_consistency_loss, velocity_target, warp_previous)
