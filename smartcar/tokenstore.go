package smartcar

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/atomicfile"
)

// ErrNoToken says there is no refresh token to start from: the store is
// empty and no seed was given. The user has to run the Connect flow.
var ErrNoToken = errors.New("smartcar: no refresh token (run the auth flow or set SMARTCAR_REFRESH_TOKEN)")

// TokenFile is the token store's file name inside DATA_DIR.
const TokenFile = "token.json"

// TokenStore keeps the token pair in DATA_DIR/token.json. Refresh tokens
// rotate and the old one dies shortly after use, so losing a write means
// losing the account: Save never leaves a torn or half-written file.
type TokenStore struct {
	path string
}

// NewTokenStore returns a store for dir/token.json. The directory is created
// on the first Save.
func NewTokenStore(dir string) *TokenStore {
	return &TokenStore{path: filepath.Join(dir, TokenFile)}
}

// Path is the token file's path, for log lines (never its content).
func (s *TokenStore) Path() string { return s.path }

// storedToken is the file format: explicit, so an oauth2 upgrade cannot
// silently change what is on disk.
type storedToken struct {
	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token"`
	Expiry       time.Time `json:"expiry,omitzero"`
	// ObtainedAt is when Smartcar issued RefreshToken. Refresh tokens die
	// 60 days after issue, so an idle daemon needs it to know when to renew
	// one; zero (a seed, or a file from an older version) means unknown.
	ObtainedAt time.Time `json:"obtained_at,omitzero"`
}

// staleTempAge is how old a leftover temp file must be before Save removes
// it. A process killed between CreateTemp and rename leaves one behind; a
// concurrent writer (the auth command while the daemon runs) holds its own
// for milliseconds, so anything this old is garbage.
const staleTempAge = 10 * time.Minute

// Load reads the stored pair. A missing file, or one without a refresh token,
// is ErrNoToken (errors.Is). Temp files a killed writer left behind are never
// read: only the renamed file counts.
func (s *TokenStore) Load() (*oauth2.Token, error) {
	t, _, err := s.LoadObtained()
	return t, err
}

// LoadObtained is Load plus when the refresh token was issued (zero when
// unknown).
func (s *TokenStore) LoadObtained() (*oauth2.Token, time.Time, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, ErrNoToken
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("load token: %w", err)
	}
	var st storedToken
	if err := json.Unmarshal(data, &st); err != nil {
		// json errors name an offset, never the content.
		return nil, time.Time{}, fmt.Errorf("load token %s: %w", s.path, err)
	}
	if st.RefreshToken == "" {
		return nil, time.Time{}, fmt.Errorf("load token %s: no refresh token in file: %w", s.path, ErrNoToken)
	}
	return &oauth2.Token{
		AccessToken:  st.AccessToken,
		TokenType:    st.TokenType,
		RefreshToken: st.RefreshToken,
		Expiry:       st.Expiry,
	}, st.ObtainedAt, nil
}

// Save writes t as a pair whose refresh token was issued just now, which is
// what the auth flow and the demo hold. See SaveObtained.
func (s *TokenStore) Save(t *oauth2.Token) error {
	return s.SaveObtained(t, time.Now())
}

// SaveObtained writes t atomically with mode 0600: temp file in the same
// directory, fsync, rename over the old file, fsync the directory. A crash at
// any point leaves either the old pair or the new one. obtainedAt is when the
// refresh token was issued; zero records "unknown".
func (s *TokenStore) SaveObtained(t *oauth2.Token, obtainedAt time.Time) error {
	if t == nil || t.RefreshToken == "" {
		return errors.New("save token: refusing to store a token without a refresh token")
	}
	data, err := json.MarshalIndent(storedToken{
		AccessToken:  t.AccessToken,
		TokenType:    t.TokenType,
		RefreshToken: t.RefreshToken,
		Expiry:       t.Expiry.UTC().Round(0),
		ObtainedAt:   obtainedAt.UTC().Round(0),
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	if err := atomicfile.Write(s.path, data, 0o600); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	s.removeStaleTemps(time.Now())
	return nil
}

// removeStaleTemps deletes temp files of earlier, killed writers: they hold
// dead or soon-dead tokens and would otherwise pile up in DATA_DIR. Best
// effort: a failure here never fails the save that already succeeded.
func (s *TokenStore) removeStaleTemps(now time.Time) {
	dir, prefix := filepath.Dir(s.path), "."+filepath.Base(s.path)+"."
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ".tmp") {
			continue
		}
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > staleTempAge {
			os.Remove(filepath.Join(dir, name))
		}
	}
}
