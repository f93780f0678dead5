package main

import (
	"fmt"
	"image/color"
	"os"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// drawChart writes a PNG with two panels over time: the bridge's RSS, and the
// consumer lag, with the outage shaded.
func drawChart(path string, samples []sample, downAt, upAt time.Duration, o options) error {
	rssPts, lagPts := make(plotter.XYs, len(samples)), make(plotter.XYs, len(samples))
	maxRSS, maxLag := 0.0, 0.0
	for i, s := range samples {
		x := s.at.Seconds()
		rssPts[i] = plotter.XY{X: x, Y: float64(s.rssBytes) / (1 << 20)}
		lagPts[i] = plotter.XY{X: x, Y: s.lag / 1000}
		maxRSS, maxLag = max(maxRSS, rssPts[i].Y), max(maxLag, lagPts[i].Y)
	}
	panel := func(title, ylabel string, pts plotter.XYs, top float64, c color.Color) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "seconds"
		p.Y.Label.Text = ylabel
		p.Y.Min, p.Y.Max = 0, top*1.15
		p.X.Min, p.X.Max = 0, samples[len(samples)-1].at.Seconds()
		shade, err := plotter.NewPolygon(plotter.XYs{
			{X: downAt.Seconds(), Y: 0}, {X: upAt.Seconds(), Y: 0}, {X: upAt.Seconds(), Y: p.Y.Max}, {X: downAt.Seconds(), Y: p.Y.Max},
		})
		if err != nil {
			return nil, err
		}
		shade.Color = color.RGBA{R: 255, G: 210, B: 210, A: 255}
		shade.LineStyle.Width = 0
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		line.Color = c
		line.Width = vg.Points(1.5)
		p.Add(shade, plotter.NewGrid(), line)
		p.Legend.Add("Temporal down", shade)
		p.Legend.Top = true
		return p, nil
	}
	top, err := panel(fmt.Sprintf("bridge RSS (%d records of %d B pre-loaded, default config)", o.records, o.size), "MiB", rssPts,
		max(maxRSS, 64), color.RGBA{B: 200, A: 255})
	if err != nil {
		return err
	}
	limit, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 64}, {X: samples[len(samples)-1].at.Seconds(), Y: 64}})
	if err != nil {
		return err
	}
	limit.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	top.Add(limit)
	top.Legend.Add("64 MiB target", limit)
	bottom, err := panel("consumer lag (records waiting in Kafka)", "thousand records", lagPts, maxLag, color.RGBA{G: 130, A: 255})
	if err != nil {
		return err
	}
	img := vgimg.New(vg.Points(720), vg.Points(540))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadX: vg.Points(6), PadY: vg.Points(12)}
	plots := [][]*plot.Plot{{top}, {bottom}}
	canvases := plot.Align(plots, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return err
	}
	return f.Close()
}
