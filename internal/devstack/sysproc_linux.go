package devstack

import "syscall"

// childAttr runs a child in its own process group (Stop and Kill signal
// the group) and kills it when this process dies (Pdeathsig), so a crashed
// test or demo leaves nothing running.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
