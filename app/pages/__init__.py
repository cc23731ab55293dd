"""One module per dashboard page (Dash pages); each reads data only through app.data."""
