# Two commands on a fresh machine: `make report` builds the sample report, `make test` runs the suite.
# Both create (or reuse) the virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.qreport-installed

.PHONY: venv report test test-slow screens samples real-data bench walk walk-record clean

venv: $(STAMP)

# qreport is installed as a wheel (as users get it; an editable install makes setuptools warn on every install), and
# again whenever a source or template file changes. Tests run from the source tree either way.
SOURCES := $(wildcard setup.py qreport/*.py qreport/*/*.py qreport/*.json templates/*.* templates/partials/*.j2)
$(STAMP): pyproject.toml $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check '.[test,pt2e]'
	touch $(STAMP)

report: $(STAMP)
	$(VENV)/bin/qreport build --model mobilenet_v2 --out reports/mobilenet_v2 --force
	@echo "open reports/mobilenet_v2/report.html"

# The fast tier (under 10 minutes on two idle cores): tiny and trained test models, a handful of mobilenet_v2
# builds, the browser tests. The slow tier runs the rest. Test files are spread over TEST_JOBS processes of one
# torch thread each (most tests are small builds that keep one core busy); TEST_JOBS=0 runs them in this process.
TEST_JOBS ?= 2
PYTEST := $(if $(filter 0,$(TEST_JOBS)),,OMP_NUM_THREADS=1) $(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile
test: $(STAMP)
	$(PYTEST) -m "not slow"

test-slow: $(STAMP)
	$(PYTEST) -m slow

# Trained weights and labelled data that need no network but the package registry: MTCNN's networks from the
# facenet-pytorch wheel, scikit-image's lfw_subset faces, scikit-learn's digits and a CNN trained on them.
REAL_DATA := .cache/real-data
real-data: $(STAMP)
	$(PY) examples/real_data.py $(REAL_DATA)

# Sample run folders (Parquet + manifest + report.html) made by the current code; fixed timestamp.
SAMPLE_ENV := SOURCE_DATE_EPOCH=1798761600
samples: real-data
	$(SAMPLE_ENV) $(VENV)/bin/qreport build --model examples/mtcnn.py:rnet --checkpoint $(REAL_DATA)/rnet.pt \
		--data $(REAL_DATA)/lfw_rnet.pt --batch-size 16 --eval-batches 9 --out sample_reports/mtcnn_rnet_lfw --force
	$(SAMPLE_ENV) $(VENV)/bin/qreport build --model examples/mtcnn.py:rnet --checkpoint $(REAL_DATA)/rnet.pt \
		--data $(REAL_DATA)/lfw_rnet.pt --batch-size 16 --eval-batches 9 --flow pt2e --quantizer x86 \
		--out sample_reports/mtcnn_rnet_lfw_pt2e --force
	$(SAMPLE_ENV) $(VENV)/bin/qreport diff sample_reports/mtcnn_rnet_lfw sample_reports/mtcnn_rnet_lfw_pt2e \
		-o sample_reports/diff_rnet_fx_vs_pt2e/diff.html
	$(SAMPLE_ENV) $(VENV)/bin/qreport build --model examples/digits.py:digits_cnn --checkpoint $(REAL_DATA)/digits_cnn.pt \
		--data $(REAL_DATA)/digits_train.pt --eval-data $(REAL_DATA)/digits.pt --batch-size 64 --eval-batches 10 \
		--out sample_reports/digits_cnn --force
	$(SAMPLE_ENV) $(VENV)/bin/qreport build --model examples/digits.py:digits_vit --checkpoint $(REAL_DATA)/digits_vit.pt \
		--data $(REAL_DATA)/digits_train.pt --eval-data $(REAL_DATA)/digits.pt --batch-size 64 --eval-batches 10 \
		--mode dynamic --out sample_reports/digits_vit_dynamic --force
	$(SAMPLE_ENV) $(VENV)/bin/qreport build --model examples/digits.py:digits_vit --checkpoint $(REAL_DATA)/digits_vit.pt \
		--data $(REAL_DATA)/digits_train.pt --eval-data $(REAL_DATA)/digits.pt --batch-size 64 --eval-batches 10 \
		--flow pt2e --mode dynamic --out sample_reports/digits_vit_dynamic_pt2e --force
	$(SAMPLE_ENV) $(VENV)/bin/qreport diff sample_reports/digits_vit_dynamic sample_reports/digits_vit_dynamic_pt2e \
		-o sample_reports/diff_vit_fx_vs_torchao/diff.html
	$(SAMPLE_ENV) $(VENV)/bin/qreport build --model mobilenet_v2 --out sample_reports/mobilenet_v2 --force
	$(SAMPLE_ENV) $(VENV)/bin/qreport build --model mobilenet_v2 --qconfig examples/seed_scenario.toml \
		--out sample_reports/mobilenet_v2_seed_scenario --force
	$(SAMPLE_ENV) $(VENV)/bin/qreport build --model examples/sequence_model.py:lstm_classifier --mode dynamic \
		--out sample_reports/lstm_dynamic --force
	$(SAMPLE_ENV) $(VENV)/bin/qreport build --model examples/qat_model.py:qat_cnn_unmodelled --mode qat \
		--out sample_reports/qat_unmodelled --force
	$(SAMPLE_ENV) $(VENV)/bin/qreport diff sample_reports/mobilenet_v2 sample_reports/mobilenet_v2_seed_scenario \
		-o sample_reports/diff_default_vs_seed/diff.html

# Full-page screenshots of every sample report at 1440 and 390 px (headless Debian chromium).
screens: $(STAMP)
	$(PY) tests/screenshots.py screens

bench: $(STAMP)
	$(PY) bench/bench.py

# Every torchvision classifier built at a small input under FX and PT2E (about two hours; not part of make test).
# walk checks the recorded results still hold; walk-record re-records them and the README table.
walk: $(STAMP)
	$(PY) -m pytest -q tests/model_walk.py

walk-record: $(STAMP)
	$(PY) tests/model_walk.py --record

clean:
	rm -rf reports build dist *.egg-info .pytest_cache
