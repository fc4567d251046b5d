package server

import (
	"context"
	"fmt"

	"github.com/hsmkms/hsmkms/service/api"
	"github.com/hsmkms/hsmkms/service/status"
)

// startStatus makes the status page served on the metrics listener and
// starts its sampler of m's request counters; shutdownMetrics stops it.
// The page goes where the metrics go, never on the API listener: it shows
// the same operator-only facts (key IDs, their use and schedule).
func (s *Server) startStatus(m *api.Metrics) (*status.Page, error) {
	rotateAt, limit := s.svc.SealThresholds()
	page, err := status.New(status.Config{Token: s.tok, Label: s.cfg.TokenLabel, Store: s.store.Store,
		Requests: m.RequestTotals, Seals: m.SealTotals, SealRotateAt: rotateAt, SealLimit: limit, Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("server: status page: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		page.Run(ctx)
	}()
	s.status = page
	s.stopStatus = func() {
		cancel()
		<-done
	}
	return page, nil
}
