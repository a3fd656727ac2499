package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/internal/dbpool"
)

// newOpsWorldWithApp is an opsWorld and a pool of the application role on
// its database.
func newOpsWorldWithApp(t *testing.T) (opsWorld, *pgxpool.Pool) {
	t.Helper()
	w := newOpsWorld(t)
	app, err := dbpool.Open(context.Background(), w.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	return w, app
}

// keyringOf is the keyring of a key-encryption key, with the previous one
// when it is not empty.
func keyringOf(t *testing.T, kek, previous string) *saasapi.DataKeyring {
	t.Helper()
	k, err := dataKeyring(Config{Environment: "production", DataKey: kek, DataKeyPrevious: previous}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// personKeys reads every wrapped key and the key it unwraps to with keys.
func personKeys(t *testing.T, w opsWorld, keys *saasapi.DataKeyring) (wrapped, plain map[saasapi.ID][]byte) {
	t.Helper()
	rows, err := w.pool.Query(context.Background(), `SELECT user_id, wrapped_key FROM person_keys`)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, plain = map[saasapi.ID][]byte{}, map[saasapi.ID][]byte{}
	for rows.Next() {
		var (
			id saasapi.ID
			wk []byte
		)
		if err := rows.Scan(&id, &wk); err != nil {
			t.Fatal(err)
		}
		wrapped[id] = wk
		if plain[id], err = keys.Unwrap(id, wk); err != nil {
			t.Fatalf("the key of %s does not unwrap: %v", id, err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return wrapped, plain
}

// TestRewrapKeys: the data keys are re-wrapped under a new key-encryption
// key in batches; a run interrupted after a batch leaves a rotation that
// start-up detects and that the next run finishes, sweeping a key that a
// process holding only the old key added meanwhile; afterwards only the new
// key opens the database, every person's data key is the one they had, and
// no key is stored unwrapped.
func TestRewrapKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w, app := newOpsWorldWithApp(t)
	oldKeys, newKEK := testKeyring(t), saasapi.NewDataKEK()
	if err := commands.CheckDataKey(ctx, app, oldKeys); err != nil { // as the service's start-up does
		t.Fatal(err)
	}
	register := func(keys *saasapi.DataKeyring, email string) {
		t.Helper()
		svc := commands.New(app, commands.Config{Keys: keys, Hasher: auth.NewHasher(auth.TestParams, 0)})
		defer svc.Close()
		if _, err := svc.Register(ctx, commands.Meta{RequestID: "req"},
			commands.RegisterInput{Email: email, Password: "correct horse battery", DisplayName: "Person"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		register(oldKeys, fmt.Sprintf("person%d@example.com", i))
	}
	wrappedBefore, plainBefore := personKeys(t, w, oldKeys)
	if len(plainBefore) != 8 {
		t.Fatalf("%d person keys, want 8", len(plainBefore))
	}

	rotating := keyringOf(t, newKEK, testDataKey)
	env := func(kek, previous string) map[string]string {
		vars := map[string]string{"SAAS_API_DATABASE_URL": w.url, "SAAS_API_DATA_KEY": kek}
		if previous != "" {
			vars["SAAS_API_DATA_KEY_PREVIOUS"] = previous
		}
		return vars
	}
	// The new key alone is refused before the rotation began.
	if _, _, err := cli(t, env(newKEK, ""), "projections", "verify"); !errors.Is(err, saasapi.ErrWrongDataKey) {
		t.Fatalf("the new key before the rotation: %v, want ErrWrongDataKey", err)
	}

	// A run interrupted after its first batch of three.
	stop, cancel := context.WithCancel(ctx)
	err := rewrapKeys(stop, w.pool, rotating, 3, &bytes.Buffer{}, &bytes.Buffer{}, func(int) { cancel() })
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("an interrupted rotation: %v, want it stopped by the context", err)
	}
	if n := countRows(t, w.pool, `SELECT count(*) FROM person_keys WHERE kek_id = $1`, rotating.ID()); n != 3 {
		t.Fatalf("%d keys re-wrapped after the first batch, want 3", n)
	}
	// Half done: a process with one key alone is refused and told what to
	// set; one with both keys starts and reads every person's key.
	for _, c := range []struct{ kek, want string }{
		{testDataKey, "a rotation of the data key from SAAS_API_DATA_KEY to a new key is under way"},
		{newKEK, "the rotation of the data key to SAAS_API_DATA_KEY is not finished"},
	} {
		if _, _, err := cli(t, env(c.kek, ""), "projections", "verify"); !errors.Is(err, saasapi.ErrWrongDataKey) ||
			!strings.Contains(err.Error(), c.want) {
			t.Errorf("one key during the rotation: %v, want %q", err, c.want)
		}
	}
	if out, _, err := cli(t, env(newKEK, testDataKey), "projections", "verify"); err != nil {
		t.Fatalf("projections verify with both keys during the rotation: %v\n%s", err, out)
	}
	// A process that still holds only the old key registers someone.
	register(oldKeys, "straggler@example.com")

	out, _, err := cli(t, env(newKEK, testDataKey), "users", "rewrap-keys", "--batch", "3")
	if err != nil || out != "re-wrapped 6 data keys under SAAS_API_DATA_KEY; the key check value names it now: remove SAAS_API_DATA_KEY_PREVIOUS from every process\n" {
		t.Fatalf("the resumed rotation: %q, %v", out, err)
	}
	newKeys := keyringOf(t, newKEK, "")
	wrappedAfter, plainAfter := personKeys(t, w, newKeys)
	if len(plainAfter) != 9 {
		t.Fatalf("%d person keys after the rotation, want 9", len(plainAfter))
	}
	for id, k := range plainBefore {
		if !bytes.Equal(plainAfter[id], k) {
			t.Errorf("the data key of %s changed in the rotation", id)
		}
		if bytes.Equal(wrappedAfter[id], wrappedBefore[id]) {
			t.Errorf("the key of %s was not re-wrapped", id)
		}
	}
	for id, wk := range wrappedAfter {
		if bytes.Contains(wk, plainAfter[id]) {
			t.Errorf("the key of %s is stored unwrapped", id)
		}
		if _, err := oldKeys.Unwrap(id, wk); err == nil {
			t.Errorf("the key of %s still opens with the old key", id)
		}
	}
	if n := countRows(t, w.pool, `SELECT count(*) FROM data_key_check WHERE next_check_value IS NULL`); n != 1 {
		t.Error("the rotation is still recorded as under way")
	}
	if _, _, err := cli(t, env(testDataKey, ""), "projections", "verify"); !errors.Is(err, saasapi.ErrWrongDataKey) {
		t.Errorf("the old key after the rotation: %v, want ErrWrongDataKey", err)
	}
	for _, args := range [][]string{{"projections", "verify"}, {"projections", "rebuild"}, {"audit", "verify"}} {
		if out, _, err := cli(t, env(newKEK, ""), args...); err != nil {
			t.Fatalf("%s with the new key: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var email string
	if err := w.pool.QueryRow(ctx, `SELECT email FROM users WHERE email = 'straggler@example.com'`).Scan(&email); err != nil {
		t.Errorf("the rebuild under the new key lost a person: %v", err)
	}
	if out, _, err := cli(t, env(newKEK, testDataKey), "users", "rewrap-keys"); err != nil || !strings.Contains(out, "nothing to do") {
		t.Errorf("rewrap-keys once finished: %q, %v", out, err)
	}
	if _, _, err := cli(t, env(newKEK, ""), "users", "rewrap-keys"); err != nil {
		t.Errorf("rewrap-keys once finished, without the previous key: %v", err)
	}
}

// TestRewrapKeysWhileTheServiceWrites: people register (with both keys, as
// the service does during a rotation) and are erased while the keys are
// re-wrapped; afterwards every key opens with the new key alone.
func TestRewrapKeysWhileTheServiceWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w, app := newOpsWorldWithApp(t)
	newKEK := saasapi.NewDataKEK()
	rotating := keyringOf(t, newKEK, testDataKey)
	old := commands.New(app, commands.Config{Keys: testKeyring(t), Hasher: auth.NewHasher(auth.TestParams, 0)})
	t.Cleanup(old.Close)
	var ids []saasapi.ID
	for i := range 20 {
		u, err := old.Register(ctx, commands.Meta{RequestID: "req"},
			commands.RegisterInput{Email: fmt.Sprintf("p%d@example.com", i), Password: "correct horse battery", DisplayName: "P"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	svc := commands.New(app, commands.Config{Keys: rotating, Hasher: auth.NewHasher(auth.TestParams, 0)})
	t.Cleanup(svc.Close)
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if _, err := svc.Register(ctx, commands.Meta{RequestID: "req"}, commands.RegisterInput{
				Email: fmt.Sprintf("new%d@example.com", i), Password: "correct horse battery", DisplayName: "N"}); err != nil {
				t.Errorf("a registration during the rotation: %v", err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for _, id := range ids[:10] {
			if err := svc.EraseUser(ctx, commands.Meta{Principal: saasapi.Principal{Type: saasapi.PrincipalSystem}}, id, nil); err != nil {
				t.Errorf("an erasure during the rotation: %v", err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	err := rewrapKeys(ctx, w.pool, rotating, 4, &bytes.Buffer{}, &bytes.Buffer{}, func(int) { time.Sleep(2 * time.Millisecond) })
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatalf("the rotation: %v", err)
	}
	personKeys(t, w, keyringOf(t, newKEK, "")) // every key opens with the new key alone
	var left int
	if err := w.pool.QueryRow(ctx, `SELECT count(*) FROM person_keys WHERE kek_id IS DISTINCT FROM $1`, rotating.ID()).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d keys not under the new key (%v)", left, err)
	}
	if err := w.pool.QueryRow(ctx, `SELECT count(*) FROM person_keys WHERE user_id = ANY($1)`, idStrings(ids[:10])).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d erased people's keys came back (%v)", left, err)
	}
}

func idStrings(ids []saasapi.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}
