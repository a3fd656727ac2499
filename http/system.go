package http

import (
	"context"
	"net/http"
	"time"
)

func (s *Server) handleHealthz() http.HandlerFunc {
	type response struct {
		Status      string `json:"status"`
		AppName     string `json:"app_name"`
		Version     string `json:"version"`
		Environment string `json:"environment"`
	}
	body := response{Status: "ok", AppName: s.deps.Info.AppName, Version: s.deps.Info.Version, Environment: s.deps.Info.Environment}
	return func(w http.ResponseWriter, _ *http.Request) { encode(w, http.StatusOK, body) }
}

func (s *Server) handleReadyz() http.HandlerFunc {
	type check struct {
		Status string `json:"status"`
		Detail string `json:"detail"`
	}
	type response struct {
		Status string           `json:"status"`
		Checks map[string]check `json:"checks"`
	}
	ready := response{Status: "ready", Checks: map[string]check{
		"postgresql": {Status: "ok", Detail: "PostgreSQL responded successfully"},
	}}
	notReady := response{Status: "not_ready", Checks: map[string]check{
		"postgresql": {Status: "unavailable", Detail: "PostgreSQL readiness check failed"},
	}}
	return func(w http.ResponseWriter, r *http.Request) {
		// A database that does not answer within the probe's patience is
		// as good as down.
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var err error
		if s.deps.Ready != nil {
			err = s.deps.Ready(ctx)
		} else {
			err = s.deps.Pool.Ping(ctx)
		}
		if err != nil {
			encode(w, http.StatusServiceUnavailable, notReady)
			return
		}
		encode(w, http.StatusOK, ready)
	}
}
