//go:build unix

package lockfile

import (
	"errors"
	"os"
	"syscall"
)

// lock takes an exclusive flock on f without waiting; held reports that
// another open file has it.
func lock(f *os.File) (held bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var flockErr error
	err = rc.Control(func(fd uintptr) {
		for {
			flockErr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
			if !errors.Is(flockErr, syscall.EINTR) {
				return
			}
		}
	})
	switch {
	case err != nil:
		return false, err
	case errors.Is(flockErr, syscall.EWOULDBLOCK):
		return true, nil
	}
	return false, flockErr
}
