package smartcar

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	"golang.org/x/oauth2"
)

// Environment of the child process TestCrashDuringRefresh starts: the test
// binary itself, running only TestCrashChild.
const (
	crashChildDir      = "SMARTCAR2MQTT_CRASH_CHILD_DIR"
	crashChildTokenURL = "SMARTCAR2MQTT_CRASH_CHILD_TOKEN_URL"
	crashVerifierUA    = "crash-verifier"
)

// TestCrashChild is the child of TestCrashDuringRefresh, not a test of its
// own: it refreshes the token in the given DATA_DIR in a tight loop until it
// is killed. It says "ready" on stdout once its token chain is loaded.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildDir)
	if dir == "" {
		t.Skip("helper process of TestCrashDuringRefresh")
	}
	conf := OAuthConfig(testClientID, testClientSecret, os.Getenv(crashChildTokenURL), "", "", nil)
	// An early-refresh window longer than the access token's life: every
	// Token call refreshes, so the kill lands in some refresh.
	tk, err := NewTokens(context.Background(), conf, NewTokenStore(dir), "", WithEarlyRefresh(time.Hour))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	fmt.Println("ready")
	for {
		if _, err := tk.Token(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(4)
		}
	}
}

// TestCrashDuringRefresh SIGKILLs a process at random points of its refresh
// loop, hundreds of times, and proves that after every kill token.json is a
// complete pair that Smartcar still accepts. The hard case is a kill after
// Smartcar rotated the refresh token but before the new pair reached the
// disk: only the old, saved token is left, and it must still work. That
// holds because Smartcar (and here the Simulator, RefreshGrace) keeps a used
// refresh token valid for a minute; the test counts how often it happened.
func TestCrashDuringRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("kills hundreds of child processes; skipped under -short")
	}
	const runs = 200
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sim := smartcarsim.New(smartcarsim.Options{
		ClientID: testClientID, ClientSecret: testClientSecret,
		AccessTTL:    time.Minute,
		RefreshGrace: time.Minute, // Smartcar's rule
	})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	dir := t.TempDir()
	store := NewTokenStore(dir)
	if err := store.Save(&oauth2.Token{RefreshToken: sim.IssueRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	conf := OAuthConfig(testClientID, testClientSecret, srv.URL+"/oauth/token", "", "", nil)

	seed1, seed2 := rand.Uint64(), rand.Uint64()
	rng := rand.New(rand.NewPCG(seed1, seed2))
	t.Logf("random seed %d,%d", seed1, seed2)

	var (
		start          = time.Now()
		childRefreshes int    // refresh requests the children sent
		rotatedUnsaved [2]int // by kind: Smartcar rotated the token, the new pair never reached token.json
		torn           int    // the kill cut the refresh request itself: Smartcar refused it
		maxTemps       int    // temp files of killed writers present at once
	)
	for i := range runs {
		before := map[string]bool{}
		for _, r := range sim.Requests() {
			before[r.RequestID] = true
		}
		first := len(before)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, exe, "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildDir+"="+dir, crashChildTokenURL+"="+srv.URL+"/oauth/token")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("run %d: child did not start (%q, %v): %s", i, line, err, stderr.String())
		}

		kind := i % 2
		if kind == 0 {
			// Anywhere in the loop: HTTP, decode, temp file, fsync, rename.
			<-time.After(time.Duration(rng.Int64N(int64(30 * time.Millisecond))))
		} else {
			// Right when Smartcar has answered the n-th refresh: the new
			// pair is in the child's socket or memory, not on disk yet.
			n := 1 + rng.IntN(5)
			answered := map[string]bool{} // WaitRequest rescans the whole log
			_, err := sim.WaitRequest(ctx, func(r smartcarsim.Request) bool {
				if r.Path == "/oauth/token" && r.Status == 200 && !before[r.RequestID] {
					answered[r.RequestID] = true
				}
				return len(answered) >= n
			})
			if err != nil {
				t.Fatalf("run %d: no refresh answered: %v: %s", i, err, stderr.String())
			}
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatalf("run %d: kill: %v", i, err)
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("run %d: child ended by itself (%v), not by the kill: %s", i, err, stderr.String())
		}
		cancel()

		// Let the simulator finish what the child sent before it died, so
		// the count below is exact.
		reqs := waitSettled(t, sim, first)

		// 1. token.json is a complete pair; temp files are not read.
		tok, obtained, err := store.LoadObtained()
		if err != nil || tok.RefreshToken == "" {
			t.Fatalf("run %d: token.json after the kill: %+v, %v", i, tok, err)
		}
		if i > 0 && (tok.AccessToken == "" || tok.Expiry.IsZero() || obtained.IsZero()) {
			t.Fatalf("run %d: token.json is not a full pair: access %t, expiry %v, obtained %v", i, tok.AccessToken != "", tok.Expiry, obtained)
		}
		temps, _ := filepath.Glob(filepath.Join(dir, ".token.json.*.tmp"))
		maxTemps = max(maxTemps, len(temps))

		// 2. Did the kill land between Smartcar's rotation and the save?
		for _, r := range reqs {
			if r.Path != "/oauth/token" {
				continue
			}
			childRefreshes++
			form, _ := url.ParseQuery(r.Body)
			if form.Get("refresh_token") != tok.RefreshToken {
				continue
			}
			if r.Status == 200 {
				rotatedUnsaved[kind]++
			} else {
				torn++
			}
		}

		// 3. A fresh process starts from the file and refreshes: Smartcar
		// must accept the saved refresh token.
		vctx := context.WithoutCancel(context.Background())
		v, err := NewTokens(vctx, conf, store, "", WithEarlyRefresh(time.Hour), WithTokenUserAgent(crashVerifierUA))
		if err != nil {
			t.Fatalf("run %d: restart: %v", i, err)
		}
		if _, err := v.Token(); err != nil {
			t.Fatalf("run %d: refresh with the saved pair after the kill: %v", i, err)
		}
	}
	t.Logf("%d kills in %v, half at a random 0-30 ms delay, half the moment a refresh was answered; the children sent %d refresh requests",
		runs, time.Since(start).Round(time.Millisecond), childRefreshes)
	t.Logf("kills between Smartcar's rotation and the save (only the 1-minute grace kept the saved token alive): %d of %d random-delay kills, %d of %d on-answer kills; %d kills tore the request itself",
		rotatedUnsaved[0], (runs+1)/2, rotatedUnsaved[1], runs/2, torn)
	t.Logf("temp files of killed writers in DATA_DIR: at most %d at once, never read by Load", maxTemps)
	if rotatedUnsaved[0]+rotatedUnsaved[1] == 0 {
		t.Error("no kill landed between rotation and save: the hard case was not exercised")
	}
}

// waitSettled waits until every request logged since index first has been
// answered, and returns them.
func waitSettled(t *testing.T, sim *smartcarsim.Simulator, first int) []smartcarsim.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		reqs := sim.Requests()[first:]
		pending := ""
		for _, r := range reqs {
			if r.Status == 0 {
				pending = r.RequestID
				break
			}
		}
		if pending == "" {
			return reqs
		}
		if _, err := sim.WaitRequest(ctx, func(r smartcarsim.Request) bool { return r.RequestID == pending && r.Status != 0 }); err != nil {
			t.Fatalf("simulator still handling %s: %v", pending, err)
		}
	}
}
