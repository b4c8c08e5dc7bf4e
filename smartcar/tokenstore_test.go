package smartcar

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestTokenStoreSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // Save creates DATA_DIR
	s := NewTokenStore(dir)

	if _, err := s.Load(); !errors.Is(err, ErrNoToken) {
		t.Fatalf("empty store: err = %v, want ErrNoToken", err)
	}

	exp := time.Date(2025, 6, 1, 14, 0, 0, 0, time.UTC)
	for i, want := range []*oauth2.Token{
		{AccessToken: "at-1", TokenType: "Bearer", RefreshToken: "rt-1", Expiry: exp},
		{AccessToken: "at-2", TokenType: "Bearer", RefreshToken: "rt-2", Expiry: exp.Add(2 * time.Hour)},
	} {
		if err := s.Save(want); err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
		got, err := s.Load()
		if err != nil {
			t.Fatalf("load %d: %v", i, err)
		}
		if got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken ||
			got.TokenType != want.TokenType || !got.Expiry.Equal(want.Expiry) {
			t.Errorf("round trip %d: got %+v, want %+v", i, got, want)
		}
	}

	fi, err := os.Stat(filepath.Join(dir, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("token file mode = %o, want 600", mode)
	}
	// Atomic replace leaves nothing behind: no temp files next to it.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("dir holds %v, want only %s", names, TokenFile)
	}
}

func TestTokenStoreModeRegardlessOfExistingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, TokenFile)
	if err := os.WriteFile(path, []byte(`{"refresh_token":"old"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := NewTokenStore(dir).Save(&oauth2.Token{RefreshToken: "new"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode after replacing a 0644 file = %o, want 600", mode)
	}
}

func TestTokenStoreFailedSaveKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	s := NewTokenStore(dir)
	if err := s.Save(&oauth2.Token{RefreshToken: "keep-me"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(&oauth2.Token{AccessToken: "no refresh token"}); err == nil {
		t.Fatal("saved a token without refresh token")
	}
	got, err := s.Load()
	if err != nil || got.RefreshToken != "keep-me" {
		t.Fatalf("after refused save: %v, %v", got, err)
	}
}

func TestTokenStoreLoadErrors(t *testing.T) {
	tests := []struct {
		name, content string
		noToken       bool
	}{
		{"corrupt", `{"refresh_token": "sec`, false},
		{"no refresh token", `{"access_token":"x"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, TokenFile), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := NewTokenStore(dir).Load()
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrNoToken) != tt.noToken {
				t.Errorf("errors.Is(ErrNoToken) = %v for %v", !tt.noToken, err)
			}
		})
	}
}
