package loadtest

import (
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Plot file names in the output folder.
const (
	PlotThroughput = "throughput.png"
	PlotLag        = "lag.png"
	PlotLatency    = "latency.png"
	PlotResources  = "resources.png"
)

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
}

// series is one line of a plot.
type series struct {
	name string
	y    func(Point) (float64, bool)
}

// writePlots renders the timeline's PNG plots into dir and returns the
// file names written (plots without data are skipped).
func writePlots(dir string, res *Result) ([]string, error) {
	pts := res.Timeline
	if len(pts) == 0 {
		return nil, nil
	}
	always := func(f func(Point) float64) func(Point) (float64, bool) {
		return func(p Point) (float64, bool) { return f(p), true }
	}
	specs := []struct {
		file, title, ylabel string
		lines               []series
	}{
		{PlotThroughput, "Throughput", "records/s", []series{
			{"produced records/s", always(func(p Point) float64 { return p.ProducedPerS })},
			{"handled records/s (node)", func(p Point) (float64, bool) { return p.HandledPerS, res.Env.Nodes > 0 }},
			{"frames with events/s (twin.events)", func(p Point) (float64, bool) { return p.FramesSeenPerS, res.Params.EventsTap }},
			{"target records/s", func(p Point) (float64, bool) { return p.TargetPerS, p.TargetPerS > 0 }},
		}},
		{PlotLag, "Consumer lag", "records", []series{
			{"lag", func(p Point) (float64, bool) { return p.Lag, p.Lag >= 0 }},
		}},
		{PlotLatency, "End-to-end latency per sample (produced → event received)", "ms", []series{
			{"p50 twin.events", func(p Point) (float64, bool) { return p.P50Ms, p.P50Ms > 0 }},
			{"p99 twin.events", func(p Point) (float64, bool) { return p.P99Ms, p.P99Ms > 0 }},
			{"p99 API stream", func(p Point) (float64, bool) { return p.APIP99Ms, p.APIP99Ms > 0 }},
		}},
		{PlotResources, "Node resources", "cores / GiB", []series{
			{"node CPU (cores)", func(p Point) (float64, bool) { return p.NodeCPU, true }},
			{"node RSS (GiB)", func(p Point) (float64, bool) { return p.NodeRSSMiB / 1024, p.NodeRSSMiB > 0 }},
			{"harness CPU (cores)", func(p Point) (float64, bool) { return p.HarnessCPU, p.HarnessCPU > 0 }},
		}},
	}
	var written []string
	for _, s := range specs {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s — %s", s.title, res.Scenario)
		p.X.Label.Text = "seconds into the run"
		p.Y.Label.Text = s.ylabel
		p.Y.Min = 0
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
		n, top := 0, 0.0
		for i, ser := range s.lines {
			var xy plotter.XYs
			for _, pt := range pts {
				if y, ok := ser.y(pt); ok {
					xy = append(xy, plotter.XY{X: pt.T, Y: y})
				}
			}
			if len(xy) == 0 {
				continue
			}
			for _, v := range xy {
				top = max(top, v.Y)
			}
			l, err := plotter.NewLine(xy)
			if err != nil {
				return written, fmt.Errorf("%w: plot %s: %w", ErrReport, s.file, err)
			}
			l.Color = palette[i%len(palette)]
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(ser.name, l)
			n++
		}
		if n == 0 {
			continue
		}
		// Room above the data for the legend.
		p.Y.Max = max(top*1.4, 1)
		if err := p.Save(9*vg.Inch, 4*vg.Inch, filepath.Join(dir, s.file)); err != nil {
			return written, fmt.Errorf("%w: plot %s: %w", ErrReport, s.file, err)
		}
		written = append(written, s.file)
	}
	return written, nil
}
