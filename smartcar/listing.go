package smartcar

import (
	"fmt"
	"slices"
	"strings"
)

// Listing is one successful listing of the account.
type Listing struct {
	Vehicles []VehicleDetails // the vehicles asked for
	Account  []string         // the id of every vehicle on the account
}

// UnknownVehiclesError is a vehicle filter (SMARTCAR_VEHICLE_IDS) naming ids
// the account does not have: a typo, which must stop the daemon rather than
// make it remove the user's real cars from Home Assistant.
type UnknownVehiclesError struct {
	Unknown []string // in the filter, not on the account
	Account []string // every vehicle id on the account
}

func (e *UnknownVehiclesError) Error() string {
	return fmt.Sprintf("SMARTCAR_VEHICLE_IDS: %s not on this Smartcar account, whose vehicles are: %s",
		quoteAll(e.Unknown, " and "), strings.Join(e.Account, ", "))
}

func quoteAll(ids []string, and string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	if len(q) == 1 {
		return q[0] + " is"
	}
	return strings.Join(q[:len(q)-1], ", ") + and + q[len(q)-1] + " are"
}

// checkFilter says which ids of only the account lacks. An empty account
// answers nothing: its cars may just not be connected yet.
func checkFilter(only, account []string) error {
	if len(account) == 0 {
		return nil
	}
	var unknown []string
	for _, id := range only {
		if !slices.Contains(account, id) {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	return &UnknownVehiclesError{Unknown: unknown, Account: slices.Clone(account)}
}
