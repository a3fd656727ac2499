package projections_test

import (
	"os"
	"testing"

	"github.com/saasapi/saasapi/internal/testdb"
)

func TestMain(m *testing.M) { os.Exit(testdb.Run(m)) }
