"""Pure Plotly figure builders (Polars frames in, go.Figure out), shared by the report and the dashboard."""
