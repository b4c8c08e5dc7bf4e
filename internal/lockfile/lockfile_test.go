//go:build unix

package lockfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// childEnv names what the test binary does as a child process: "hold" takes
// the lock on the directory in childDirEnv and keeps it until killed or its
// stdin closes; "exit" exits at once (its pid is then a dead one).
const (
	childEnv    = "LOCKFILE_TEST_CHILD"
	childDirEnv = "LOCKFILE_TEST_DIR"
)

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "hold":
		l, err := Acquire(os.Getenv(childDirEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Printf("locked %d\n", os.Getpid())
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it, or kills us
		if err := l.Release(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		os.Exit(0)
	case "exit":
		os.Exit(0)
	}
}

// child runs this test binary as a child process in mode.
func child(t *testing.T, mode, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// atexit_sleep_ms=0: a race-enabled child otherwise lingers a second on exit.
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childDirEnv+"="+dir, "GORACE=atexit_sleep_ms=0")
	cmd.Stderr = &strings.Builder{}
	return cmd
}

func content(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, Name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantHeld(t *testing.T, err error, dir string, pid int) {
	t.Helper()
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("Acquire = %v (%T), want a *HeldError", err, err)
	}
	if held.Path != filepath.Join(dir, Name) || held.PID != pid {
		t.Errorf("HeldError = %+v, want Path %s and PID %d", held, filepath.Join(dir, Name), pid)
	}
	want := fmt.Sprintf("DATA_DIR %s is in use by another smartcar2mqtt (pid %d): stop it first, or give this one its own DATA_DIR", dir, pid)
	if err.Error() != want {
		t.Errorf("message %q\nwant %q", err, want)
	}
}

// TestSecondAcquireFails: the flock belongs to an open file, so a second
// Acquire in the same process is refused like another process would be.
func TestSecondAcquireFails(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if got, want := content(t, dir), strconv.Itoa(os.Getpid())+"\n"; got != want {
		t.Errorf("lock file holds %q, want the pid %q", got, want)
	}
	_, err = Acquire(dir)
	wantHeld(t, err, dir, os.Getpid())
	if got, want := content(t, dir), strconv.Itoa(os.Getpid())+"\n"; got != want {
		t.Errorf("a refused Acquire changed the lock file to %q", got)
	}
}

func TestReleaseThenAcquire(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if got := content(t, dir); got != "" {
		t.Errorf("lock file after Release holds %q, want it empty", got)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if err := l2.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, Name)); err != nil {
		t.Errorf("Release removed the lock file: %v", err)
	}
}

// TestLeftOverFileIsTaken: a file naming a dead process, with no flock on
// it, is what a crash leaves: it must not stand in the way.
func TestLeftOverFileIsTaken(t *testing.T) {
	dir := t.TempDir()
	dead := child(t, "exit", dir)
	if err := dead.Run(); err != nil {
		t.Fatalf("child: %v: %s", err, dead.Stderr)
	}
	if err := os.WriteFile(filepath.Join(dir, Name), []byte(strconv.Itoa(dead.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire over a left-over file: %v", err)
	}
	defer l.Release()
	if got, want := content(t, dir), strconv.Itoa(os.Getpid())+"\n"; got != want {
		t.Errorf("lock file holds %q, want our pid %q", got, want)
	}
}

// TestHeldByAnotherProcess: a child holds the lock; the parent is refused,
// told the child's pid; the child is killed (a crash: no Release), and the
// kernel's release of its flock lets the parent in.
func TestHeldByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := child(t, "hold", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child did not report the lock: %v (stderr: %s)", err, cmd.Stderr)
	}
	if want := fmt.Sprintf("locked %d\n", cmd.Process.Pid); line != want {
		t.Fatalf("child said %q, want %q", line, want)
	}

	_, err = Acquire(dir)
	wantHeld(t, err, dir, cmd.Process.Pid)

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Wait returns once the child is gone, its files closed and its flock dropped.
	_ = cmd.Wait()
	exited = true
	if got, want := content(t, dir), strconv.Itoa(cmd.Process.Pid)+"\n"; got != want {
		t.Errorf("the killed child's file holds %q, want its pid %q still there", got, want)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder died: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestHolderWithoutPID: a holder that wrote no pid (not yet, or another
// program) is "another process".
func TestHolderWithoutPID(t *testing.T) {
	for name, data := range map[string]string{"empty": "", "garbage": "not a pid\n", "negative": "-5\n"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, Name)
			if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
				t.Fatal(err)
			}
			_, err = Acquire(dir)
			var held *HeldError
			if !errors.As(err, &held) || held.PID != 0 {
				t.Fatalf("Acquire = %v, want a *HeldError with PID 0", err)
			}
			want := "DATA_DIR " + dir + " is in use by another process: stop it first, or give this one its own DATA_DIR"
			if err.Error() != want {
				t.Errorf("message %q\nwant %q", err, want)
			}
		})
	}
}

// TestOneWinner: of many Acquires at once, exactly one gets the lock.
func TestOneWinner(t *testing.T) {
	dir := t.TempDir()
	const n = 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		locks []*Lock
		held  int
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Acquire(dir)
			mu.Lock()
			defer mu.Unlock()
			var h *HeldError
			switch {
			case err == nil:
				locks = append(locks, l)
			case errors.As(err, &h):
				held++
			default:
				t.Errorf("Acquire: %v", err)
			}
		}()
	}
	wg.Wait()
	if len(locks) != 1 || held != n-1 {
		t.Errorf("%d Acquires won and %d were refused, want 1 and %d", len(locks), held, n-1)
	}
	for _, l := range locks {
		l.Release()
	}
}

func TestAcquireErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{
		"missing directory": filepath.Join(t.TempDir(), "missing"),
		"a file":            file,
	} {
		t.Run(name, func(t *testing.T) {
			l, err := Acquire(dir)
			var held *HeldError
			if err == nil || errors.As(err, &held) || l != nil {
				t.Fatalf("Acquire(%s) = %v, %v, want an error that is not a HeldError", dir, l, err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "lock DATA_DIR: ") || !strings.Contains(msg, filepath.Join(dir, Name)) {
				t.Errorf("error %q, want it to say what failed and where", msg)
			}
		})
	}
}

func TestNilLockRelease(t *testing.T) {
	var l *Lock
	if err := l.Release(); err != nil {
		t.Error(err)
	}
}
