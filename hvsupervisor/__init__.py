"""hvsupervisor: run and supervise an OpenStack hypervisor node's agents under systemd."""

__version__ = "0.1.0"
