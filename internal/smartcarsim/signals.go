package smartcarsim

import (
	"net/http"
	"slices"
	"strings"
)

// Signal codes the simulator reports for every vehicle, whatever its make:
// v3 reads are make-agnostic.
const (
	signalDoor      = "charge-ischargingportflapopen"
	signalPlug      = "charge-ischargingcableconnected"
	signalLatch     = "charge-ischargingcablelatched"
	signalCharging  = "charge-detailedchargingstatus"
	signalLimits    = "charge-chargelimits"
	signalEnergy    = "charge-energyadded"
	signalGroupName = "Charge"
)

// signalCodes is the order GET /signals lists them in.
func signalCodes() []string {
	return []string{signalDoor, signalPlug, signalLatch, signalCharging, signalLimits, signalEnergy}
}

// signalList is GET /v3/vehicles/{id}/signals.
type signalList struct {
	Data []signalResource `json:"data"`
}

// signalResource is one signal; GET /signals/{code} answers it bare, as
// Smartcar's reference (and the Node SDK's getSignal) show.
type signalResource struct {
	ID         string           `json:"id"`
	Type       string           `json:"type"`
	Attributes signalAttributes `json:"attributes"`
	Meta       signalMeta       `json:"meta"`
	Links      selfLink         `json:"links"`
}

type signalAttributes struct {
	Code   string       `json:"code"`
	Name   string       `json:"name"`
	Group  string       `json:"group"`
	Status signalStatus `json:"status"`
	Body   any          `json:"body,omitempty"` // absent when the permission is missing
}

type signalStatus struct {
	Value string       `json:"value"` // SUCCESS or ERROR
	Error *signalError `json:"error,omitempty"`
}

type signalError struct {
	Type string  `json:"type"`
	Code *string `json:"code"`
}

type signalMeta struct {
	RetrievedAt  int64 `json:"retrievedAt"`  // epoch ms
	OEMUpdatedAt any   `json:"oemUpdatedAt"` // epoch ms, or an ISO-8601 string in the alternative form
}

// Signal bodies, each in its own struct so the wire names are written here.
type (
	boolValue struct {
		Value bool `json:"value"`
	}
	flapOpen struct { // the door's alternative form
		IsOpen bool `json:"isOpen"`
	}
	stringValue struct {
		Value string `json:"value"`
	}
	chargeLimits struct {
		ActiveLimit *int          `json:"activeLimit,omitempty"` // percent
		Values      []chargeLimit `json:"values"`
	}
	chargeLimit struct {
		Type  string `json:"type"`  // GLOBAL, LOCATION …
		Limit int    `json:"limit"` // percent: 80, not 0.8
	}
	energyValue struct {
		Value float64 `json:"value"`
		Unit  string  `json:"unit"`
	}
)

// signalBody is a signal's name and body for the car's state; ok is false
// for a code the simulator does not know.
func signalBody(v vehicle, code string, alt bool) (name string, body any, ok bool) {
	switch code {
	case signalDoor:
		if alt {
			return "IsChargingPortFlapOpen", flapOpen{IsOpen: v.open}, true
		}
		return "IsChargingPortFlapOpen", boolValue{Value: v.open}, true
	case signalPlug:
		return "IsChargingCableConnected", boolValue{Value: v.plugged}, true
	case signalLatch:
		return "IsChargingCableLatched", boolValue{Value: v.plugged}, true
	case signalCharging:
		status := "NOT_CHARGING"
		if v.plugged {
			status = "CHARGING"
		}
		return "DetailedChargingStatus", stringValue{Value: status}, true
	case signalLimits:
		if alt {
			return "ChargeLimits", chargeLimits{Values: []chargeLimit{{Type: "GLOBAL", Limit: 80}, {Type: "LOCATION", Limit: 90}}}, true
		}
		active := 80
		return "ChargeLimits", chargeLimits{ActiveLimit: &active, Values: []chargeLimit{{Type: "GLOBAL", Limit: 80}}}, true
	case signalEnergy:
		e := energyValue{Unit: "kWh"}
		if v.plugged {
			e.Value = 4.2
		}
		return "EnergyAdded", e, true
	}
	return "", nil, false
}

// signalPermission is the permission a signal needs.
func signalPermission(code string) string {
	if strings.HasPrefix(code, "charge-") {
		return permReadCharge
	}
	return permReadVehicleInfo
}

// signal builds one signal document. A missing permission or a
// SetSignalError shows in its status, as Smartcar reports a signal it could
// not read without failing the whole request.
func (s *Simulator) signal(v vehicle, code string, alt bool) (signalResource, bool) {
	name, body, ok := signalBody(v, code, alt)
	if !ok {
		return signalResource{}, false
	}
	status := signalStatus{Value: "SUCCESS"}
	if e, failed := v.signalErrs[code]; failed {
		// The body stays: it is the last value read, now stale.
		status = signalStatus{Value: "ERROR", Error: &signalError{Type: e.typ, Code: nullable(e.code)}}
	}
	if !slices.Contains(v.perms, signalPermission(code)) {
		status = signalStatus{Value: "ERROR", Error: &signalError{Type: "PERMISSION"}}
		body = nil
	}
	var oemUpdatedAt any = v.updatedAt.UnixMilli()
	if alt {
		oemUpdatedAt = timestamp(v.updatedAt)
	}
	return signalResource{
		ID:   code,
		Type: "signal",
		Attributes: signalAttributes{
			Code:   code,
			Name:   name,
			Group:  signalGroupName,
			Status: status,
			Body:   body,
		},
		Meta:  signalMeta{RetrievedAt: s.opts.Now().UnixMilli(), OEMUpdatedAt: oemUpdatedAt},
		Links: selfLink{Self: "/vehicles/" + v.info.ID + "/signals/" + code},
	}, true
}

func (s *Simulator) alt() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.altBodies
}

func (s *Simulator) handleSignals(w http.ResponseWriter, r *http.Request, v vehicle) {
	switch v.noData {
	case http.StatusNotFound:
		writeV3Error(w, http.StatusNotFound, "RESOURCE_NOT_FOUND", "SIGNAL", 0)
		return
	case http.StatusOK:
		writeJSON(w, http.StatusOK, signalList{Data: []signalResource{}})
		return
	}
	alt := s.alt()
	list := signalList{Data: []signalResource{}}
	for _, code := range signalCodes() {
		sig, _ := s.signal(v, code, alt)
		list.Data = append(list.Data, sig)
	}
	writeJSON(w, http.StatusOK, list)
}

// handleSignal answers one signal. A car with no data (either SetNoData
// form) has no such signal: 404, as for a code it does not know.
func (s *Simulator) handleSignal(w http.ResponseWriter, r *http.Request, v vehicle) {
	sig, ok := s.signal(v, r.PathValue("code"), s.alt())
	if !ok || v.noData != 0 {
		writeV3Error(w, http.StatusNotFound, "RESOURCE_NOT_FOUND", "SIGNAL", 0)
		return
	}
	writeJSON(w, http.StatusOK, sig)
}
