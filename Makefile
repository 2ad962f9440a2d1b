# make run  — install, migrate, seed, and start the web app + one qcluster (SQLite, local engine)
# make test — install and run the whole suite on SQLite (DATABASE_URL picks another database)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install clean

# `make run` says which engine the worker will use (FITTING_ENGINE, its model and prompts), and
# with a Google engine (gemini, vertex-tryon) whether the provider serves its models (manage.py check_engine).
ENGINE_LINE := from django.conf import settings as s; from fitting.engines import engine_identity as e; \
  print('  Engine:     %s %s' % (e(), 'via ' + (s.GEMINI_BASE_URL or ('Vertex AI' if s.GEMINI_USE_VERTEXAI else 'the Gemini API')) \
  if s.FITTING_ENGINE in ('gemini', 'vertex-tryon') \
  else '- offline preview compositor (FITTING_ENGINE=gemini or vertex-tryon for Google models)'))

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	@echo ""
	@echo "  Demo page:  http://127.0.0.1:8000/"
	@echo "  Admin:      http://127.0.0.1:8000/admin/   (admin / admin-password)"
	@echo "  Demo login: demo / demo-password (its token is the DEMO_TOKEN line above)"
	@echo "  API docs:   http://127.0.0.1:8000/api/docs/"
	@echo "  Health:     http://127.0.0.1:8000/healthz"
	@echo "  Dashboard:  http://127.0.0.1:8000/admin/dashboard/"
	@$(PY) manage.py shell --no-imports -c "$(ENGINE_LINE)" 2>/dev/null
	@# Whether the provider serves the configured models (check_engine); never stops `make run`.
	@LOG_LEVEL=WARNING $(PY) manage.py check_engine 2>&1 | sed 's/^/  Models:     /'
	@echo ""
	$(VENV)/bin/honcho start

test: $(STAMP)
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm
