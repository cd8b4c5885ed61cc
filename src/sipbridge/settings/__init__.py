"""Each setting declared once (settings of the bridge, of a provider), and what reads them."""
