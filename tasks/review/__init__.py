"""`hashtagger review`: a small web app where people correct the tags (issue 25).

config (ReviewConfig) -> queue (what to ask, with which classes) -> pictures (served from result rows
only) -> app (FastAPI routes, the token, CSRF and host checks) -> templates/ and static/ (the page).
"""
