# SPDX-License-Identifier: Apache-2.0
"""Linux capability numbers by name (include/uapi/linux/capability.h), as the kernel's capable() hook sees them."""

CAPABILITIES = {
    name: number
    for number, name in enumerate(
        (
            "chown",
            "dac_override",
            "dac_read_search",
            "fowner",
            "fsetid",
            "kill",
            "setgid",
            "setuid",
            "setpcap",
            "linux_immutable",
            "net_bind_service",
            "net_broadcast",
            "net_admin",
            "net_raw",
            "ipc_lock",
            "ipc_owner",
            "sys_module",
            "sys_rawio",
            "sys_chroot",
            "sys_ptrace",
            "sys_pacct",
            "sys_admin",
            "sys_boot",
            "sys_nice",
            "sys_resource",
            "sys_time",
            "sys_tty_config",
            "mknod",
            "lease",
            "audit_write",
            "audit_control",
            "setfcap",
            "mac_override",
            "mac_admin",
            "syslog",
            "wake_alarm",
            "block_suspend",
            "audit_read",
            "perfmon",
            "bpf",
            "checkpoint_restore",
        )
    )
}
CAPABILITY_NAMES = {number: name for name, number in CAPABILITIES.items()}
