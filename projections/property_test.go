package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/projections"
)

// TestEveryEventTypeFolds: the bulk path folds exactly the event types
// the inline path handles, so neither can miss one the other projects.
func TestEveryEventTypeFolds(t *testing.T) {
	if folded, handled := projections.FoldedTypes(), projections.HandledTypes(); !slices.Equal(folded, handled) {
		t.Fatalf("folded event types %v, handled %v", folded, handled)
	}
}

// TestBulkEqualsInline runs random sequences of commands (which write the
// read tables inline, event by event) and checks that the rebuild's bulk
// path produces exactly the same tables, and that Verify agrees, for
// several seeds and bulk batch sizes (small ones cut streams across
// batches). The sequences produce every event type the folds handle
// (checked): sign-ins that succeed and fail, erasures (whose sealed
// fields a replay reads as erased, the tombstone), organisation renames,
// projects written by people and by API keys, descriptions set and
// cleared, keys revoked, members whose roles change and who leave.
// Commands may be refused (a project already deleted, the last owner
// leaving): a refusal writes nothing, which the replay must also show.
func TestBulkEqualsInline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			r := rand.New(rand.NewPCG(seed, 42))
			const password = "correct horse battery"
			users := []saasapi.ID{w.owner}
			emails := map[saasapi.ID]string{w.owner: "owner@example.com"}
			projects := append([]saasapi.ID(nil), w.projects...)
			var keys []saasapi.ID
			statuses := []string{"active", "archived"}
			roles := []saasapi.Role{saasapi.RoleAdmin, saasapi.RoleMember, saasapi.RoleViewer}
			pick := func(ids []saasapi.ID) saasapi.ID { return ids[r.IntN(len(ids))] }
			// actor is the owner or, once there are keys, sometimes a key.
			actor := func() commands.Meta {
				if len(keys) > 0 && r.IntN(3) == 0 {
					return commands.Meta{Principal: saasapi.APIKeyPrincipal(pick(keys), w.org), RequestID: "req-key"}
				}
				return w.as(w.owner)
			}
			for i := range 120 {
				switch r.IntN(11) {
				case 0:
					email := fmt.Sprintf("u%d-%d@example.com", seed, i)
					u, err := w.svc.Register(ctx, commands.Meta{RequestID: "req"}, commands.RegisterInput{
						Email: email, Password: password, DisplayName: "u"})
					if err != nil {
						t.Fatal(err)
					}
					users, emails[u.ID] = append(users, u.ID), email
					_, _ = w.svc.AddMember(ctx, w.as(w.owner), w.org,
						commands.AddMemberInput{UserID: u.ID, Role: roles[r.IntN(len(roles))]})
				case 1:
					in := commands.CreateProjectInput{Name: fmt.Sprintf("p%d", i)}
					if r.IntN(2) == 0 {
						d := fmt.Sprintf("about %d", i)
						in.Description = &d
					}
					_, _ = w.svc.CreateProject(ctx, actor(), w.org, in, nil,
						func(p projections.Project) (commands.Rendered, error) {
							projects = append(projects, p.ID)
							return commands.Rendered{Status: 201}, nil
						})
				case 2:
					var in commands.UpdateProjectInput
					if r.IntN(2) == 0 {
						s := statuses[r.IntN(2)]
						in.Status = &s
					}
					if r.IntN(2) == 0 {
						name := fmt.Sprintf("renamed %d", i)
						in.Name = &name
					}
					switch r.IntN(3) {
					case 0:
						d := fmt.Sprintf("described %d", i)
						in.Description = saasapi.OptionalString{Set: true, Value: &d}
					case 1:
						in.Description = saasapi.OptionalString{Set: true}
					}
					_, _ = w.svc.UpdateProject(ctx, actor(), w.org, pick(projects), in)
				case 3:
					_ = w.svc.DeleteProject(ctx, actor(), w.org, pick(projects))
				case 4:
					_, _ = w.svc.ChangeMemberRole(ctx, w.as(w.owner), w.org, pick(users), roles[r.IntN(len(roles))])
				case 5:
					if u := pick(users); u != w.owner {
						_ = w.svc.RemoveMember(ctx, w.as(w.owner), w.org, u)
					}
				case 6:
					u := pick(users)
					pw := password
					if r.IntN(2) == 0 {
						pw = "a wrong password"
					}
					_, _ = w.svc.Login(ctx, commands.Meta{RequestID: "req-login"}, emails[u], pw)
				case 7:
					if u := pick(users); u != w.owner {
						_ = w.svc.EraseUser(ctx, commands.Meta{Principal: saasapi.Principal{Type: saasapi.PrincipalSystem}, RequestID: "req-erase"}, u, nil)
					}
				case 8:
					var in commands.UpdateOrganisationInput
					name := fmt.Sprintf("Acme %d", i)
					slug := fmt.Sprintf("acme-%d-%d", seed, i)
					if r.IntN(2) == 0 {
						in.Name = &name
					} else {
						in.Slug = &slug
					}
					_, _ = w.svc.UpdateOrganisation(ctx, w.as(w.owner), w.org, in)
				case 9:
					_, _ = w.svc.CreateAPIKey(ctx, w.as(w.owner), w.org, fmt.Sprintf("key %d", i), nil,
						func(k commands.CreatedAPIKey) (commands.Rendered, error) {
							keys = append(keys, k.Key.ID)
							return commands.Rendered{Status: 201}, nil
						})
				case 10:
					if len(keys) > 0 {
						_, _ = w.svc.RevokeAPIKey(ctx, w.as(w.owner), w.org, pick(keys))
					}
				}
			}
			w.svc.Wait()
			var seen []string
			rows, err := w.db.Pool.Query(ctx, `SELECT DISTINCT event_type FROM events ORDER BY 1`)
			if err == nil {
				seen, err = pgx.CollectRows(rows, pgx.RowTo[string])
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := projections.FoldedTypes(); !slices.Equal(seen, want) {
				t.Fatalf("the sequence produced event types %v; want every folded one, %v", seen, want)
			}
			var byKey int
			if err := w.db.Pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE actor_api_key_id IS NOT NULL`).Scan(&byKey); err != nil || byKey == 0 {
				t.Fatalf("%d events written by an API key (%v); want some", byKey, err)
			}
			inline := dump(t, w.db.Pool)
			for _, batch := range []int{0, 1 + r.IntN(7)} {
				src := readEvents
				src.Batch = batch
				if _, diffs, err := projections.Verify(ctx, w.db.Pool, src); err != nil || len(diffs) != 0 {
					t.Fatalf("Verify (batch %d) after random commands: %v, %v", batch, diffs, err)
				}
				if _, err := projections.Rebuild(ctx, w.db.Pool, src, nil); err != nil {
					t.Fatal(err)
				}
				if bulk := dump(t, w.db.Pool); !sameDump(inline, bulk) {
					t.Fatalf("the rebuilt tables (batch %d) differ from the ones the commands wrote:\ninline %v\nbulk   %v", batch, inline, bulk)
				}
			}
		})
	}
}
