package haschema_test

import (
	"fmt"
	"testing"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/haschema"
)

// TestEverythingDiscoveryEmits runs both validators over every payload
// discovery.Config produces for a spread of settings and vehicles, so a
// change to the payload that Home Assistant would reject fails here.
func TestEverythingDiscoveryEmits(t *testing.T) {
	settings := []discovery.Settings{
		{Prefix: "homeassistant", BaseTopic: "smartcar2mqtt", Origin: discovery.Origin{Name: "smartcar2mqtt"}},
		{Prefix: "homeassistant", BaseTopic: "smartcar2mqtt", Origin: discovery.Origin{Name: "smartcar2mqtt", SWVersion: "v1.2.3", SupportURL: "https://github.com/smartcar2mqtt/smartcar2mqtt/issues"}},
		{Prefix: "ha/discovery", BaseTopic: "home/cars & more", Origin: discovery.Origin{Name: "smartcar2mqtt", SWVersion: "dev"}},
	}
	// Every combination of the two permissions on a Tesla (both, door
	// only, read only, neither), plus names that stress the entity ids.
	vehicles := []discovery.Vehicle{
		{ID: "36ab27d0-fd9d-4455-823a-ce30af709ffc", Make: "TESLA", Model: "Model 3", Year: 2021, ChargePortDoor: true, ChargeRead: true},
		{ID: "door-only", Make: "TESLA", Model: "Model Y", Year: 2023, ChargePortDoor: true},
		{ID: "read-only", Make: "TESLA", Model: "Model S", Year: 2019, ChargeRead: true},
		{ID: "neither", Make: "TESLA", Model: "Model X", Year: 2020},
		{ID: "V_1", Make: "", Model: "", Year: 0, ChargePortDoor: true, ChargeRead: true},
		{ID: "x", Make: "MERCEDES-BENZ", Model: "EQS <AMG>", Year: 2024, ChargePortDoor: true, ChargeRead: true},
		{ID: "nonlatin", Model: "理想", ChargePortDoor: true, ChargeRead: true},
		{ID: "ford-1", Make: "FORD", Model: "Mustang Mach-E", Year: 2022},
	}
	for i, s := range settings {
		for _, v := range vehicles {
			t.Run(fmt.Sprintf("settings%d/%s", i, v.ID), func(t *testing.T) {
				payload, err := discovery.Config(s, v)
				if err != nil {
					t.Fatal(err)
				}
				topic := discovery.ConfigTopic(s.Prefix, v.ID)
				// Nil means "publish an empty retained payload": that too
				// must be a valid discovery message.
				if err := haschema.Validate(topic, payload); err != nil {
					t.Errorf("Validate: %v\npayload: %s", err, payload)
				}
				if err := haschema.ValidateStrict(topic, payload); err != nil {
					t.Errorf("ValidateStrict: %v\npayload: %s", err, payload)
				}
			})
		}
	}
}
