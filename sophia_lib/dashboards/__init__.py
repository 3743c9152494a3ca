"""Dashboards: the notebooks in ``notebooks/dashboards/`` served read-only by the ``dashboards`` hub service.

- :mod:`.registry`: which dashboards exist (built-in ``dashboards.yaml`` plus published ones) and who may see them.
- :mod:`.render`: execute a dashboard notebook with papermill as one policy scope and render static HTML.
- :mod:`.snapshots`: after each refresh, render every dashboard once per policy scope that has viewers.
- :mod:`.service`: the hub service (listing, instant snapshots, live Voila, audit of every view).
- :mod:`.publish`: analysts publish their notebooks for an audience.
- :mod:`.ui`: tiles, charts and filters that keep the notebooks short.
"""
