package fleet

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/lorawan"
)

// Radio model constants (EU868, 125 kHz channels).
const (
	txPowerDBm      = 14.0 // EU868 default max EIRP for end devices
	gwAntennaGainDB = 2.0  // typical gateway antenna
	noiseFloorDBm   = -117 // -174 + 10·log10(125 kHz) + 6 dB noise figure
	pathLossAt1m    = 31.2 // free-space loss at 1 m, 868 MHz
	pathLossExp     = 2.8  // urban/indoor log-distance exponent
	shadowingSigma  = 6.0  // per (sensor, gateway) log-normal shadowing
	fadingSigma     = 2.0  // per-uplink variation
	adrMarginDB     = 10.0 // installation margin of the ADR choice
	minRSSI         = -120 // RSSI report range (dBm)
	maxRSSI         = -40
	minSNR, maxSNR  = -20.0, 10.0
	originLat       = 52.0907 // Utrecht: gateways get plausible coordinates
	originLon       = 5.1214
	metresPerDegLat = 111_320.0
)

// numChannels is the number of EU868 uplink channels used.
const numChannels = 8

// channelHz returns EU868 uplink channel i: the three mandatory channels
// plus the five that LoRaWAN networks commonly add.
func channelHz(i int) uint32 {
	return [numChannels]uint32{868_100_000, 868_300_000, 868_500_000, 867_100_000, 867_300_000, 867_500_000, 867_700_000, 867_900_000}[i]
}

// demodFloorDB is the lowest SNR at which spreading factor sf (7..12)
// still demodulates.
func demodFloorDB(sf int) float64 { return -7.5 - 2.5*float64(sf-7) }

// dataRateName is the LoRa data-rate string of sf at 125 kHz ("SF9BW125").
func dataRateName(sf int) string {
	return [6]string{"SF7BW125", "SF8BW125", "SF9BW125", "SF10BW125", "SF11BW125", "SF12BW125"}[sf-7]
}

// GatewayInfo describes one simulated gateway.
type GatewayInfo struct {
	EUI       lorawan.EUI64
	X, Y      float64 // metres from the fleet's origin
	Latitude  float64
	Longitude float64
}

// link is the mean radio budget from a sensor to one gateway.
type link struct {
	gw      int     // gateway index
	meanSNR float64 // dB, before per-uplink fading
}

// meanRSSI returns the mean received signal power (dBm) over distance d (m)
// with extra loss (building penetration, shadowing).
func meanRSSI(d, extraLoss float64) float64 {
	d = max(d, 1)
	return txPowerDBm + gwAntennaGainDB - (pathLossAt1m + 10*pathLossExp*math.Log10(d) + extraLoss)
}

// chooseSF picks the fastest spreading factor (7..12) whose demodulation
// floor leaves adrMarginDB below the best link's mean SNR, as a network
// server's ADR would.
func chooseSF(bestSNR float64) int {
	for sf := 7; sf < 12; sf++ {
		if bestSNR-demodFloorDB(sf) >= adrMarginDB {
			return sf
		}
	}
	return 12
}

// reception is one gateway hearing one uplink.
type reception struct {
	gw   int
	rssi int32
	snr  float32
}

// receive decides which gateways hear an uplink at spreading factor sf and
// with which RSSI/SNR. links are sorted best first. At least the best link
// always hears it (loss is modelled separately by FrameLoss), at most
// maxGW do. The result is appended to dst.
func receive(dst []reception, rng *rand.Rand, links []link, sf, maxGW int) []reception {
	floor := demodFloorDB(sf)
	for i, l := range links {
		snr := l.meanSNR + rng.NormFloat64()*fadingSigma
		if snr < floor {
			if i > 0 {
				continue
			}
			snr = floor + rng.Float64() // the best gateway hears it, just
		}
		if len(dst) < maxGW {
			dst = append(dst, reception{gw: l.gw, rssi: reportedRSSI(snr), snr: reportedSNR(snr)})
		}
	}
	return dst
}

// reportedRSSI is the channel power a gateway reports: signal plus noise,
// so it never drops far below the noise floor even for negative SNR.
func reportedRSSI(snr float64) int32 {
	signal := noiseFloorDBm + snr
	p := 10 * math.Log10(math.Pow(10, signal/10)+math.Pow(10, noiseFloorDBm/10))
	return int32(math.Round(min(max(p, minRSSI), maxRSSI)))
}

// reportedSNR clamps to the concentrator's range in 0.25 dB steps.
func reportedSNR(snr float64) float32 {
	return float32(math.Round(min(max(snr, minSNR), maxSNR)*4) / 4)
}

// airtime is the LoRa time on air of a PHYPayload of n bytes at spreading
// factor sf, 125 kHz, coding rate 4/5, explicit header, CRC on, 8-symbol
// preamble (Semtech SX1276 datasheet §4.1.1.6).
func airtime(n, sf int) time.Duration {
	tsym := float64(int(1)<<sf) / 125_000.0
	de := 0
	if sf >= 11 {
		de = 1 // low data-rate optimisation
	}
	num := float64(8*n - 4*sf + 28 + 16)
	den := float64(4 * (sf - 2*de))
	payloadSym := 8 + max(math.Ceil(num/den)*5, 0)
	return time.Duration((12.25 + payloadSym) * tsym * float64(time.Second))
}
