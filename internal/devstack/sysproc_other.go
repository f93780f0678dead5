//go:build unix && !linux

package devstack

import "syscall"

// childAttr runs a child in its own process group (Stop and Kill signal
// the group). Only Linux has Pdeathsig: elsewhere a child outlives a
// process killed before it stopped the child (a test killed by -timeout).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
