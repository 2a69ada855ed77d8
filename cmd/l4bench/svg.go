package main

import (
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Chart geometry, in SVG user units (pixels at 100 %).
const (
	chartWidth  = 960
	panelHeight = 300
	chartTop    = 70 // title and legend
	plotLeft    = 60
	plotRight   = 20
	plotTop     = 30 // panel title
	plotBottom  = 40 // group labels
)

// modeColor gives each mode a fixed colour (the Tableau 10 palette), so
// that every chart reads alike.
func modeColor(mode string, i int) string {
	switch mode {
	case modeDirect:
		return "#7f7f7f"
	case modeL4raw:
		return "#d62728"
	case modeKernel:
		return "#1f77b4"
	case modeHAProxy:
		return "#2ca02c"
	case modeGoproxy:
		return "#ff7f0e"
	}
	other := []string{"#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"}
	return other[i%len(other)]
}

// niceCeil rounds v up to 1, 2, 2.5, 3, 4 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 3, 4, 5, 10} {
		if m*e >= v*(1-1e-9) {
			return m * e
		}
	}
	return 10 * e
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// renderSVG draws the ratios as grouped bars: one panel against kernel, one
// against direct; a group per test, a bar per mode, a dashed line at 1.
func renderSVG(r *Results) string {
	height := chartTop + 2*panelHeight + 10
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	title := "l4raw benchmark: throughput ratios (median; higher is better)"
	if r.Meta["smoke"] == "1" {
		title += " [smoke run]"
	}
	p(`<text x="%d" y="22" font-size="16" font-weight="bold">%s</text>`+"\n", plotLeft, esc(title))
	// Legend.
	x := plotLeft
	for i, mode := range r.Modes {
		p(`<rect x="%d" y="36" width="14" height="14" fill="%s"/>`, x, modeColor(mode, i))
		p(`<text x="%d" y="48">%s</text>`+"\n", x+18, esc(mode))
		x += 30 + 8*len(mode)
	}
	for panel, ref := range []string{modeKernel, modeDirect} {
		top := chartTop + panel*panelHeight
		drawPanel(&b, r, ref, top)
	}
	p("</svg>\n")
	return b.String()
}

func drawPanel(b *strings.Builder, r *Results, ref string, top int) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	ratio := func(s *Summary) *float64 {
		if s == nil {
			return nil
		}
		if ref == modeKernel {
			return s.VsKernel
		}
		return s.VsDirect
	}
	ymax := 1.0
	for _, t := range r.Tests {
		for _, m := range r.Modes {
			if v := ratio(r.find(m, t)); v != nil {
				ymax = math.Max(ymax, *v)
			}
		}
	}
	ymax = niceCeil(ymax * 1.12)
	x0, x1 := float64(plotLeft), float64(chartWidth-plotRight)
	y0, y1 := float64(top+plotTop), float64(top+panelHeight-plotBottom) // y1 is the baseline
	yOf := func(v float64) float64 { return y1 - (y1-y0)*v/ymax }

	p(`<g class="panel" data-reference="%s">`+"\n", esc(ref))
	p(`<text x="%g" y="%g" font-size="14" font-weight="bold">ratio to %s</text>`+"\n", x0, y0-10, esc(ref))
	// Grid and y axis.
	step := niceCeil(ymax / 5)
	for i := 0; float64(i)*step <= ymax*(1+1e-9); i++ {
		v := float64(i) * step
		y := yOf(v)
		p(`<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#e0e0e0"/>`, x0, y, x1, y)
		p(`<text x="%g" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y+4, strconv.FormatFloat(v, 'g', 4, 64))
	}
	p(`<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#000000"/>`+"\n", x0, y1, x1, y1)
	p(`<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#000000" stroke-dasharray="6 4"/>`+"\n", x0, yOf(1), x1, yOf(1))

	if len(r.Tests) == 0 || len(r.Modes) == 0 {
		p("</g>\n")
		return
	}
	groupW := (x1 - x0) / float64(len(r.Tests))
	barW := groupW * 0.8 / float64(len(r.Modes))
	for ti, t := range r.Tests {
		gx := x0 + groupW*float64(ti) + groupW*0.1
		p(`<text x="%.1f" y="%g" text-anchor="middle" font-size="13">%s</text>`+"\n", gx+groupW*0.4, y1+20, esc(testTitle(t)))
		for mi, m := range r.Modes {
			bx := gx + barW*float64(mi)
			v := ratio(r.find(m, t))
			if v == nil {
				p(`<text x="%.1f" y="%g" text-anchor="middle" fill="#888888">n/a</text>`+"\n", bx+barW/2, y1-4)
				continue
			}
			y := yOf(*v)
			p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %.2f × %s</title></rect>`,
				bx+1, y, barW-2, y1-y, modeColor(m, mi), esc(m), esc(testTitle(t)), *v, esc(ref))
			p(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%.2f</text>`+"\n", bx+barW/2, y-3, *v)
		}
	}
	p("</g>\n")
}
