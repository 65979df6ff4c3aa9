"""A simulated cluster: in-memory hypervisor hosts on a virtual clock.

For fast tests of everything above `hypervisor/` and for large-scale
simulation; never used by `ferry lab` or by any lab test.  Hosts implement
`ferry.hypervisor.base.Hypervisor`; migrations advance on the same pre-copy
model that `predict/` uses (a guest dirtying faster than its link does not
converge); faults are injected by hand or at a virtual time.

    clock = SimClock()
    cluster = SimCluster(clock)
    cluster.add_host("node1"); cluster.add_host("node2")
    services = wiring.build(settings, cluster.connect, clock, InlineExecutor())
"""

from ferry.simulated.clock import InlineExecutor, SimClock
from ferry.simulated.cluster import SimCluster
from ferry.simulated.domain import Workload
from ferry.simulated.host import SimHost

__all__ = ["InlineExecutor", "SimClock", "SimCluster", "SimHost", "Workload"]
