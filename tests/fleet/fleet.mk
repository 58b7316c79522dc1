# tests/fleet/fleet.mk - included by the top Makefile (issue 16)
# make fleet-test: fleet mode's black-box tests (tests/fleet/test_fleet_*.py)
# against a throw-away PostgreSQL over TLS with certificate verification
# (tests/fleet/pg.sh, PG_TLS=1: initdb/pg_ctl of Debian's postgresql package
# in a temp dir, loopback only) and three keywardd nodes on loopback sharing
# it and one SoftHSM2 token.  FLEET_PYTEST_ARGS selects, e.g.
#   make fleet-test FLEET_PYTEST_ARGS="-k propagation -s"
FLEET_PYTEST_ARGS ?=
.PHONY: fleet-test
fleet-test: all test-tools
	cd tests/fleet && PG_TLS=1 ./pg.sh env KEYWARD_BUILD=$(abspath $(BUILD)) \
	  /usr/bin/python3 -m pytest -q -p no:cacheprovider $(FLEET_PYTEST_ARGS) .
