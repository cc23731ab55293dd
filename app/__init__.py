"""bookrec's Dash dashboard: `create_app(db_path)` in app.main; pages in app/pages, pure figures in app/figures."""
