"""The emulated lab: a chain of devices on one Linux machine, real in all but the hardware.

One network namespace per device, veth links shaped to each `[[link]]` (TBF for the rate;
netem or, where the kernel lacks it, a user-space relay for the latency), an unshaped
management network from the lab machine to every device, an OpenSSH server per device and
cgroup limits from `[device.lab]`. Each part is a small module of its own so later work
(a chained validation run, devices with older Python stacks) can reuse it:

- `spec`: the chain to emulate and each device's `[device.lab]` limits;
- `layout`: every name and address of a lab, derived from its folder;
- `host`: what the lab needs from this machine (privileges, tools);
- `netns`: namespaces and interfaces (`ip`);
- `shaping`: rate and latency qdiscs (`tc`);
- `relay`: the user-space latency relay (a stdlib script);
- `sshd`: an OpenSSH server per device, its keys and known_hosts;
- `cgroups`: CPU and memory limits (cgroup v1 or v2);
- `processes`: processes the lab starts, named by pid and start time;
- `state`: the lab's state file in its folder;
- `chainfile`: the `devices.toml` the lab writes for the rest of omdp;
- `lifecycle`: up, status and down;
- `demo`: the demo chain as a lab. See docs/lab.md.
"""
