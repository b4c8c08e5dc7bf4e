package supervisor

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMQTTService(t *testing.T) {
	for _, tt := range []struct {
		name    string
		status  int
		body    string
		want    string // URL, or "" for an error
		wantErr string
		noSvc   bool
	}{
		{"the Mosquitto add-on", 200, `{"result":"ok","data":{"addon":"core_mosquitto","host":"core-mosquitto","port":1883,"ssl":false,"protocol":"3.1.1","username":"addons","password":"pw-Xx1"}}`, "tcp://core-mosquitto:1883", "", false},
		{"with TLS", 200, `{"result":"ok","data":{"host":"core-mosquitto","port":8883,"ssl":true,"username":"a","password":"b"}}`, "ssl://core-mosquitto:8883", "", false},
		{"no broker add-on", 400, `{"result":"error","message":"Service not enabled","data":{}}`, "", "", true},
		{"those words in a 500", 500, `{"result":"error","message":"Service not enabled"}`, "", "HTTP 500: Service not enabled", false},
		{"refused", 403, `{"result":"error","message":"No API access"}`, "", "HTTP 403: No API access", false},
		{"not the Supervisor", 502, `<html>bad gateway</html>`, "", "HTTP 502, not the Supervisor's JSON", false},
		{"no host", 200, `{"result":"ok","data":{"port":1883}}`, "", "names no host and port", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer tok-Ab1" || r.URL.Path != "/services/mqtt" {
					t.Errorf("asked %s with %q", r.URL.Path, r.Header.Get("Authorization"))
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			m, err := Client{URL: srv.URL, Token: "tok-Ab1"}.MQTTService(t.Context())
			switch {
			case tt.noSvc:
				if !errors.Is(err, ErrNoService) {
					t.Errorf("err = %v, want ErrNoService", err)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case m.URL() != tt.want:
				t.Errorf("URL %s, want %s", m.URL(), tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "tok-Ab1") {
				t.Errorf("the token reached the error: %v", err)
			}
		})
	}
}
