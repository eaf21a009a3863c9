"""Native processes for development, tests and benchmarks (never imported by services)."""

from rag_devstack.keys import create_api_key
from rag_devstack.processes import (
    LOOPBACK,
    ManagedProcess,
    ProcessFailed,
    StartCancelled,
    descendants,
    free_port,
    http_ok,
    pid_alive,
    port_is_free,
    redis_answers,
    wait_gone,
)
from rag_devstack.stack import SERVICES, NativeStack, StackPorts, executable

__all__ = [
    "LOOPBACK",
    "SERVICES",
    "ManagedProcess",
    "NativeStack",
    "ProcessFailed",
    "StackPorts",
    "StartCancelled",
    "create_api_key",
    "descendants",
    "executable",
    "free_port",
    "http_ok",
    "pid_alive",
    "port_is_free",
    "redis_answers",
    "wait_gone",
]
