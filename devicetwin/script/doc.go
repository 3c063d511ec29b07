// Package script is the JSON Lines language of `legiond twin replay` and of
// the device-twin scenario tests: input lines (uplinks with their Clip'R
// message, ticks, acknowledgements, clears, configuration changes), event
// output lines, and the expectation lines scenarios add.
//
// It is pure like the core: it parses and formats bytes and drives twins,
// but never opens files or reads a clock. The caller owns the I/O.
//
// Input line (one JSON object): "at" (RFC 3339) and exactly one of
//
//	"measurement": {"intervalS":60,"batteryMv":3000,"samples":[{"pipeC":55.1,"ambientC":21}]}
//	"waterEvent":  {"event":"flush"|"disinfection","startedSAgo":120,"durationS":180,"startPipeC":20,"extremePipeC":61}
//	"status":      {"detached":false,"probeFault":false,"rebooted":false,"batteryMv":3000}
//	"payload":     "hex" with "fPort" (a raw Clip'R payload, decoded here)
//	"tick":        true
//	"ack":         {"alarmType":"FLUSH_OVERDUE","by":"jan","note":"on it"}
//	"clear":       {"alarmType":"SECURITY","by":"jan","note":"false alarm"}
//	"config":      {"revision":2,"tapKind":"HOT_TAP","profile":"DE","intervalS":900,"tapOverrides":{…}}
//	"sessionReset": {"by":"join"}
//	"gatewayStats": {"rxReceived":10,"rxOk":9}   (with "gateway")
//
// Uplink lines (measurement, waterEvent, status, payload) carry "fCnt" and
// optionally "gateway" (16 hex digits), "rssi" and "snr".
//
// Output line: "at", "type" (reading, waterEvent, alarm, status,
// gatewayStatus, rejected), "id", and the kind's fields; see FormatEvent.
//
// Scenario files add a header line first ({"scenario":…,"tapKind":…}) and
// expectation lines that refer to the events of the input line before
// them: {"expect":{…}} (some event has all these fields), {"expectNot":{…}}
// (no event has them) and {"expectNone":true} (no event at all). Lines
// starting with '#' are comments there.
package script
