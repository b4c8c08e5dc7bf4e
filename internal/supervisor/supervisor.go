// Package supervisor asks Home Assistant's Supervisor, from inside an add-on,
// for what it offers the add-on: today only the MQTT broker of the Mosquitto
// add-on (or of whichever add-on provides the mqtt service).
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// ErrNoService is the Supervisor's HTTP 400 "Service not enabled": no add-on
// provides that service (no MQTT broker add-on installed). Every other
// failure is an error of its own.
var ErrNoService = errors.New("the Supervisor offers no such service")

// MQTT is the broker the Supervisor offers, with an account for this add-on.
type MQTT struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	SSL      bool   `json:"ssl"`
	Protocol string `json:"protocol"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// URL is the broker's address as MQTT_URL takes it.
func (m MQTT) URL() string {
	scheme := "tcp"
	if m.SSL {
		scheme = "ssl"
	}
	return scheme + "://" + net.JoinHostPort(m.Host, strconv.Itoa(m.Port))
}

// Client calls the Supervisor's REST API with the add-on's token.
type Client struct {
	URL   string // base URL, e.g. http://supervisor
	Token string
	HTTP  *http.Client // nil: a client with a 10 s timeout
}

// envelope is every Supervisor API answer.
type envelope struct {
	Result  string          `json:"result"` // ok or error
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// MQTTService asks for the MQTT broker. It returns ErrNoService when the
// Supervisor has none.
func (c Client) MQTTService(ctx context.Context) (MQTT, error) {
	var m MQTT
	if err := c.get(ctx, "/services/mqtt", &m); err != nil {
		return MQTT{}, fmt.Errorf("ask the Supervisor for its MQTT broker: %w", err)
	}
	if m.Host == "" || m.Port <= 0 || m.Port > 65535 {
		return MQTT{}, errors.New("ask the Supervisor for its MQTT broker: the answer names no host and port")
	}
	return m, nil
}

func (c Client) get(ctx context.Context, path string, into any) error {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := hc.Do(req)
	if err != nil {
		return err // names the URL, never the token (it is in a header)
	}
	defer resp.Body.Close()
	var env envelope
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("HTTP %d, not the Supervisor's JSON", resp.StatusCode)
	}
	if env.Result != "ok" {
		// Only this answer means "none"; the same words with another status
		// are a Supervisor in trouble, which the caller must not take as none.
		if resp.StatusCode == http.StatusBadRequest && env.Message == "Service not enabled" {
			return ErrNoService
		}
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, printable(env.Message))
	}
	if err := json.Unmarshal(env.Data, into); err != nil {
		return fmt.Errorf("the answer's data: %w", err)
	}
	return nil
}

// printable keeps a message from the network to one short, plain line.
func printable(s string) string {
	out := make([]rune, 0, min(len(s), 200))
	for _, r := range s {
		if len(out) == 200 {
			return string(out) + "…"
		}
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}
