package loadtest

import "errors"

// Sentinel errors. Every error the package returns wraps one of them (or a
// context error), so callers branch with errors.Is.
var (
	// ErrInvalidConfig is wrapped by every Config.Validate error.
	ErrInvalidConfig = errors.New("loadtest: invalid config")
	// ErrUnknownScenario: the scenario name is not one of Scenarios().
	ErrUnknownScenario = errors.New("loadtest: unknown scenario")
	// ErrProvision: the fleet could not be provisioned.
	ErrProvision = errors.New("loadtest: provision")
	// ErrProduce: uplinks could not be written to Kafka.
	ErrProduce = errors.New("loadtest: produce")
	// ErrObserve: the events tap or the API stream failed for good.
	ErrObserve = errors.New("loadtest: observe")
	// ErrFleet: the fleet simulator stopped with an error (a simulator bug).
	ErrFleet = errors.New("loadtest: fleet")
	// ErrReport: the report could not be written.
	ErrReport = errors.New("loadtest: report")
	// ErrScrape: a metrics endpoint could not be read or parsed.
	ErrScrape = errors.New("loadtest: scrape")
)
