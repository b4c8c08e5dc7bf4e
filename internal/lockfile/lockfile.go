// Package lockfile keeps to one smartcar2mqtt per DATA_DIR. Two daemons on one
// directory would overwrite each other's token store, vehicle cache and retained
// messages, and (API v2.0) each renew the refresh token, one of them with a token
// the other has just spent.
//
// The lock is an flock on DATA_DIR/smartcar2mqtt.lock, which the kernel drops when
// its holder exits, however it exits: a crash never leaves a stale lock, so no one
// ever needs to delete the file by hand. The holder writes its pid into the file for
// the message a second daemon prints; a pid found there means nothing by itself
// (it may be a process long gone), only the flock does.
package lockfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Name is the lock file's name in DATA_DIR.
const Name = "smartcar2mqtt.lock"

// Lock is DATA_DIR held by this process, until Release or exit.
type Lock struct {
	f *os.File // its open file description holds the flock
}

// HeldError is Acquire's error when another process holds the lock.
type HeldError struct {
	Path string // the lock file, DATA_DIR/smartcar2mqtt.lock
	PID  int    // the pid the holder wrote in it; 0 when there is none to read
}

func (e *HeldError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("another smartcar2mqtt (pid %d)", e.PID)
	}
	return fmt.Sprintf("DATA_DIR %s is in use by %s: stop it first, or give this one its own DATA_DIR", filepath.Dir(e.Path), who)
}

// Acquire takes DATA_DIR dir for this process, without waiting: it returns a
// *HeldError at once when another process (or another Acquire in this one: the
// lock belongs to an open file, not to a process) holds it. dir must exist. On
// success the lock file holds this process's pid.
func Acquire(dir string) (*Lock, error) {
	path := filepath.Join(dir, Name)
	// No O_TRUNC: opening must not wipe the pid of a holder we are about to
	// find. The file is emptied only once the lock is ours.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock DATA_DIR: %w", err)
	}
	held, err := lock(f)
	if held || err != nil {
		defer f.Close()
		if held {
			return nil, &HeldError{Path: path, PID: readPID(f)}
		}
		return nil, fmt.Errorf("lock DATA_DIR: flock %s: %w", path, err)
	}
	if err := writePID(f); err != nil {
		f.Close() // lets go of the lock too
		return nil, fmt.Errorf("lock DATA_DIR: write the pid into %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Release lets DATA_DIR go. It empties the lock file first, so a file left
// behind names no one, but never removes it: a process that had opened the
// file just before the removal would lock the removed file while a third one
// created and locked a new one, and both would think they held DATA_DIR.
// Calling it again does nothing.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	truncErr := f.Truncate(0)
	// Closing the only descriptor of the open file description drops the flock.
	if err := f.Close(); err != nil {
		return fmt.Errorf("unlock DATA_DIR: %w", err)
	}
	if truncErr != nil {
		return fmt.Errorf("unlock DATA_DIR: empty the lock file: %w", truncErr)
	}
	return nil
}

// writePID replaces the file's content with this process's pid.
func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// readPID is the pid in the holder's file, or 0 when there is none: the holder
// may not have written it yet, or may be some other program.
func readPID(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
