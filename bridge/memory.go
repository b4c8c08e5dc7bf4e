package bridge

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/atomicfile"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// memory keeps one vehicle's last known door state in DATA_DIR, so that a restart
// publishes it at once and waits for the poll that is due instead of spending a
// Smartcar call to learn what it already knew.
type memory struct {
	path string
}

type savedState struct {
	State      string       `json:"state"`
	Attributes attributes   `json:"attributes"`
	KnownAt    time.Time    `json:"known_at"`         // when the state was last learned from the car
	Charge     *savedCharge `json:"charge,omitempty"` // the last successful read
	ReadAt     time.Time    `json:"read_at"`
}

// savedCharge is the last read as kept on disk. Files written before API v3
// hold the charge limit as v2.0's fraction, socLimit; it is read into percent.
type savedCharge struct {
	smartcar.ChargeState
	SocLimit *float64 `json:"socLimit,omitempty"`
}

func (c *savedCharge) state() *smartcar.ChargeState {
	if c == nil {
		return nil
	}
	st := c.ChargeState
	if st.LimitPercent == nil && c.SocLimit != nil {
		st.LimitPercent = new(smartcar.PercentFromFraction(*c.SocLimit))
	}
	return &st
}

func saveCharge(st *smartcar.ChargeState) *savedCharge {
	if st == nil {
		return nil
	}
	return &savedCharge{ChargeState: *st}
}

func newMemory(dir, vehicleID string) *memory {
	if dir == "" {
		return nil
	}
	// Vehicle ids are [a-zA-Z0-9_-]+ (discovery checks), safe as a file name.
	return &memory{path: filepath.Join(dir, "state-"+vehicleID+".json")}
}

func (m *memory) load(log logrus.FieldLogger) (savedState, bool) {
	var s savedState
	if m == nil {
		return s, false
	}
	data, err := os.ReadFile(m.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.WithError(err).Warn("cannot read the saved door state; starting afresh")
		}
		return s, false
	}
	if err := json.Unmarshal(data, &s); err != nil || s.State == "" {
		log.WithError(err).Warn("ignoring an unreadable saved door state")
		return savedState{}, false
	}
	if s.Attributes.LastReadAt.IsZero() {
		s.Attributes.LastReadAt = s.ReadAt // a file from before last_read_at
	}
	return s, true
}

// UnmarshalJSON reads the attributes as kept in DATA_DIR, by this version or
// by one before the last_command fields. Those kept one result and one time for
// whichever call came last (source command or poll): only a command's is the
// command's, so after a poll the command's result and time are left unknown
// rather than guessed.
func (a *attributes) UnmarshalJSON(data []byte) error {
	var w struct {
		LastCommand       string     `json:"last_command"`
		LastCommandResult string     `json:"last_command_result"`
		LastCommandAt     time.Time  `json:"last_command_at"`
		LastReadAt        time.Time  `json:"last_read_at"`
		Error             *errorWire `json:"error"`

		// Before the last_command fields.
		Result    string    `json:"result"`     // success or error
		UpdatedAt time.Time `json:"updated_at"` // of the call that was last
		Source    string    `json:"source"`     // command or poll
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*a = attributes{LastCommand: w.LastCommand, LastCommandResult: w.LastCommandResult,
		LastCommandAt: w.LastCommandAt, LastReadAt: w.LastReadAt}
	if w.Error != nil {
		a.Error = w.Error.info()
	}
	if w.Result == "" || w.LastCommandResult != "" {
		return nil
	}
	if w.Source == "command" {
		a.LastCommandResult, a.LastCommandAt = w.Result, w.UpdatedAt
	}
	if w.Result != resultError {
		a.Error = nil
		return nil
	}
	if a.Error == nil { // cannot be written, but a hand-edited file can say anything
		a.Error = &errorInfo{}
	}
	if a.Error.At.IsZero() {
		a.Error.At = w.UpdatedAt
	}
	legacyError(a.Error)
	return nil
}

// errorWire reads an error object as written by this version or an older one.
type errorWire struct {
	Type        string    `json:"type"`
	Code        string    `json:"code"`
	Description string    `json:"description"`
	RequestID   string    `json:"request_id"`
	Resolution  string    `json:"resolution"`
	StatusCode  int       `json:"status_code"`
	At          time.Time `json:"at"`
}

func (e errorWire) info() *errorInfo {
	return &errorInfo{Type: e.Type, Code: e.Code, Description: e.Description, RequestID: e.RequestID,
		Resolution: e.Resolution, StatusCode: e.StatusCode, At: e.At}
}

// legacyError brings an error kept by an older version to today's rules: always
// TYPE:CODE, and a sentence rather than Go's error text, which that version kept
// for failures without an answer from Smartcar (the details are gone).
func legacyError(e *errorInfo) {
	switch {
	case e.Type == smartcar.TypeNetwork && e.Code == "":
		e.Code, e.Description = "FAILED", "the connection to Smartcar failed (kept by an earlier version of smartcar2mqtt, without details)"
	case e.Type == smartcar.TypeTimeout && e.Code == "":
		e.Code, e.Description = "REQUEST", "Smartcar did not answer in time (kept by an earlier version of smartcar2mqtt)"
	case e.Type == "":
		// A proxy's answer without Smartcar's body.
		e.Type, e.Code = smartcar.TypeHTTP, strconv.Itoa(e.StatusCode)
	case e.Code == "":
		e.Code = smartcar.CodeUnspecified
	}
}

func (m *memory) save(log logrus.FieldLogger, s savedState) {
	if m == nil {
		return
	}
	data, err := json.Marshal(s)
	if err == nil {
		err = atomicfile.Write(m.path, data, 0o600)
	}
	if err != nil {
		log.WithError(err).Warn("cannot save the door state; a restart will read it again")
	}
}
