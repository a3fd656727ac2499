// Command withcluster runs a command against a throwaway PostgreSQL cluster:
//
//	go run ./internal/withcluster -- CMD [ARGS...]
//
// It starts one fast (non-durable) cluster in a temporary directory, sets
// SAAS_API_TEST_DATABASE_URL to the superuser URL of its postgres database,
// runs CMD with our stdin, stdout and stderr, then stops the cluster and
// removes the directory, and exits with CMD's exit status (128+N if CMD was
// killed by signal N). `make test` runs `go test -race ./...` this way, so
// that all test packages share one server instead of starting one each (see
// internal/testdb).
//
// SIGINT and SIGTERM are passed on to CMD; the cluster is stopped once CMD
// has exited, or has been killed a minute after the signal. Set
// WITHCLUSTER_VERBOSE=1 for the cluster's progress messages.
//
// Note that `go run` itself reports any non-zero exit status as 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/saasapi/saasapi/internal/pgcluster"
	"github.com/saasapi/saasapi/internal/testdb"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("withcluster: ")
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: withcluster [--] CMD [ARGS...]")
		os.Exit(2)
	}
	os.Exit(run(args))
}

func run(args []string) int {
	// Fail before paying for a cluster.
	path, err := exec.LookPath(args[0])
	if err != nil {
		log.Print(err)
		return 127
	}
	// Catch the signals from the start, so that one arriving while the
	// cluster starts still lets us stop it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	startCtx, cancelStart := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelStart()
	interrupted, startDone, watchDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-sigs:
			close(interrupted)
			cancelStart()
		case <-startDone:
		}
	}()
	opts := pgcluster.Options{Fast: true}
	if os.Getenv("WITHCLUSTER_VERBOSE") != "" {
		opts.Logf = log.Printf
	}
	began := time.Now()
	cluster, err := pgcluster.StartTemp(startCtx, opts)
	// From here on sigs is ours alone.
	close(startDone)
	<-watchDone
	if err != nil {
		select {
		case <-interrupted:
			log.Print("interrupted while starting PostgreSQL")
			return 130
		default:
		}
		log.Print(err)
		return 1
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cluster.Stop(ctx); err != nil {
			log.Print(err)
		}
	}()
	select {
	case <-interrupted:
		log.Print("interrupted")
		return 130
	default:
	}
	log.Printf("PostgreSQL on 127.0.0.1:%d (started in %v)", cluster.Port(), time.Since(began).Round(time.Millisecond))

	cmd := exec.Command(path, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), testdb.EnvURL+"="+cluster.URL("postgres"))
	if err := cmd.Start(); err != nil {
		log.Print(err)
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var kill <-chan time.Time
	for {
		select {
		case err := <-done:
			return exitCode(err)
		case sig := <-sigs:
			// From a terminal, CMD got the signal too, being in our process
			// group; from kill(1) or a CI runner, only we did.
			_ = cmd.Process.Signal(sig)
			if kill == nil {
				kill = time.After(time.Minute)
			}
		case <-kill:
			log.Print("command still running a minute after the signal; killing it")
			_ = cmd.Process.Kill()
		}
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exitErr.ExitCode()
	}
	log.Print(err)
	return 1
}
