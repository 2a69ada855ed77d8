package main

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Bulk is the result of one iperf3 run.
type Bulk struct {
	Streams int `json:"streams"`
	// Gbps is what the receiver got (sum_received), the rate that matters;
	// SenderGbps is what left the client.
	Gbps        float64 `json:"gbps"`
	SenderGbps  float64 `json:"sender_gbps"`
	Bytes       uint64  `json:"bytes"` // received
	Seconds     float64 `json:"seconds"`
	OmitS       float64 `json:"omit_s"`      // seconds at the start left out of the sums (iperf3 --omit)
	Retransmits uint64  `json:"retransmits"` // TCP retransmissions of the sender, all streams
	// Congestion control of the sender's and the receiver's sockets, as
	// iperf3 reports it: the proof that the run used cubic.
	SenderCC   string `json:"sender_cc"`
	ReceiverCC string `json:"receiver_cc"`
}

// iperfJSON is the part of "iperf3 --json" output (iperf 3.x) that is used.
type iperfJSON struct {
	Start struct {
		TestStart struct {
			NumStreams int     `json:"num_streams"`
			Omit       float64 `json:"omit"`
		} `json:"test_start"`
	} `json:"start"`
	End struct {
		SumSent struct {
			Seconds       float64 `json:"seconds"`
			Bytes         uint64  `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   uint64  `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         uint64  `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		SenderCC   string `json:"sender_tcp_congestion"`
		ReceiverCC string `json:"receiver_tcp_congestion"`
	} `json:"end"`
	Error string `json:"error"`
}

// errIperf marks a failure iperf3 reported itself (its "error" field).
var errIperf = errors.New("iperf3")

// parseIperf reads the output of "iperf3 --json" (client side).
func parseIperf(b []byte) (Bulk, error) {
	var j iperfJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Bulk{}, fmt.Errorf("parse iperf3 json: %w", err)
	}
	if j.Error != "" {
		return Bulk{}, fmt.Errorf("%w: %s", errIperf, j.Error)
	}
	r := j.End.SumReceived
	if r.Seconds <= 0 || r.Bytes == 0 {
		return Bulk{}, errors.New("iperf3: no data received")
	}
	return Bulk{
		Streams:     j.Start.TestStart.NumStreams,
		Gbps:        r.BitsPerSecond / 1e9,
		SenderGbps:  j.End.SumSent.BitsPerSecond / 1e9,
		Bytes:       r.Bytes,
		Seconds:     r.Seconds,
		OmitS:       j.Start.TestStart.Omit,
		Retransmits: j.End.SumSent.Retransmits,
		SenderCC:    j.End.SenderCC,
		ReceiverCC:  j.End.ReceiverCC,
	}, nil
}

// totalGB estimates the gigabytes that crossed during the whole run, the
// omitted start included, at the measured rate: what the CPU time of the
// whole run paid for.
func (b *Bulk) totalGB() float64 {
	if b.Seconds <= 0 {
		return 0
	}
	return float64(b.Bytes) / 1e9 * (b.Seconds + b.OmitS) / b.Seconds
}
